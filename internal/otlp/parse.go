package otlp

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"time"

	"mcpguard.dev/mcpguard/internal/protowire"
)

// The receiver's answers are the only input this package parses: an
// Export*ServiceResponse, a gRPC frame, a google.rpc.Status in the
// grpc-status-details-bin trailer. Each parser reads only the fields it
// needs, skips the rest and rejects malformed wire data.

var errMalformed = errors.New("malformed protobuf")

// fields calls f for each field of the protobuf message m; f gets the
// field's number, wire type and, for a varint, its value and for bytes,
// its contents.
func fields(m []byte, f func(n protowire.Number, t protowire.Type, v uint64, b []byte) error) error {
	for len(m) > 0 {
		n, t, l := protowire.ConsumeTag(m)
		if l < 0 {
			return errMalformed
		}
		m = m[l:]
		var v uint64
		var b []byte
		switch t {
		case protowire.VarintType:
			v, l = protowire.ConsumeVarint(m)
		case protowire.BytesType:
			b, l = protowire.ConsumeBytes(m)
		default:
			l = protowire.ConsumeFieldValue(n, t, m)
		}
		if l < 0 {
			return errMalformed
		}
		m = m[l:]
		if err := f(n, t, v, b); err != nil {
			return err
		}
	}
	return nil
}

// partialSuccess reads an ExportTraceServiceResponse or
// ExportMetricsServiceResponse: field 1 is the partial success, whose
// field 1 counts the rejected spans or data points and field 2 says why.
func partialSuccess(resp []byte) (rejected int64, msg string, err error) {
	err = fields(resp, func(n protowire.Number, t protowire.Type, _ uint64, b []byte) error {
		if n != 1 || t != protowire.BytesType {
			return nil
		}
		return fields(b, func(n protowire.Number, t protowire.Type, v uint64, b []byte) error {
			switch {
			case n == 1 && t == protowire.VarintType:
				rejected = int64(v)
			case n == 2 && t == protowire.BytesType:
				msg = string(b)
			}
			return nil
		})
	})
	return rejected, msg, err
}

const retryInfoType = "type.googleapis.com/google.rpc.RetryInfo"

// retryInfo reads a google.rpc.Status (the grpc-status-details-bin
// trailer) for a google.rpc.RetryInfo detail, the server's requested
// delay before a retry; ok reports whether there is one.
func retryInfo(status []byte) (delay time.Duration, ok bool, err error) {
	err = fields(status, func(n protowire.Number, t protowire.Type, _ uint64, any []byte) error {
		if n != 3 || t != protowire.BytesType { // details: repeated Any
			return nil
		}
		var typ string
		var value []byte
		if err := fields(any, func(n protowire.Number, t protowire.Type, _ uint64, b []byte) error {
			switch {
			case n == 1 && t == protowire.BytesType:
				typ = string(b)
			case n == 2 && t == protowire.BytesType:
				value = b
			}
			return nil
		}); err != nil || typ != retryInfoType || ok {
			return err
		}
		ok = true
		return fields(value, func(n protowire.Number, t protowire.Type, _ uint64, d []byte) error {
			if n != 1 || t != protowire.BytesType { // retry_delay: Duration
				return nil
			}
			var secs, nanos int64
			if err := fields(d, func(n protowire.Number, t protowire.Type, v uint64, _ []byte) error {
				switch {
				case n == 1 && t == protowire.VarintType:
					secs = int64(v)
				case n == 2 && t == protowire.VarintType:
					nanos = int64(int32(v))
				}
				return nil
			}); err != nil {
				return err
			}
			delay = durationOf(secs, nanos)
			return nil
		})
	})
	if err != nil {
		return 0, false, err
	}
	return delay, ok, nil
}

// durationOf is a google.protobuf.Duration as a time.Duration, saturating
// as durationpb's AsDuration does, and never below zero: a delay.
func durationOf(secs, nanos int64) time.Duration {
	d := time.Duration(secs) * time.Second
	overflow := d/time.Second != time.Duration(secs)
	d += time.Duration(nanos)
	overflow = overflow || (secs < 0 && nanos < 0 && d > 0) || (secs > 0 && nanos > 0 && d < 0)
	if overflow {
		if secs > 0 {
			return time.Duration(math.MaxInt64)
		}
		return 0
	}
	return max(d, 0)
}

// readFrame reads one gRPC length-prefixed message from r: a compressed
// flag, a 4-byte big-endian length and the message, at most limit bytes.
// It returns io.EOF when r ends before a frame starts.
func readFrame(r io.Reader, limit int) (msg []byte, compressed bool, err error) {
	var prefix [5]byte
	if _, err := io.ReadFull(r, prefix[:]); err != nil {
		if err == io.ErrUnexpectedEOF {
			err = errors.New("grpc: truncated frame prefix")
		}
		return nil, false, err
	}
	if prefix[0] > 1 {
		return nil, false, fmt.Errorf("grpc: frame flag %d", prefix[0])
	}
	n := binary.BigEndian.Uint32(prefix[1:])
	if uint64(n) > uint64(limit) {
		return nil, false, fmt.Errorf("grpc: response message of %d bytes exceeds %d", n, limit)
	}
	msg = make([]byte, n)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, false, fmt.Errorf("grpc: truncated message: %w", err)
	}
	return msg, prefix[0] == 1, nil
}
