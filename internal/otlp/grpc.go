package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// gRPC status codes this package acts on (google.golang.org/grpc/codes).
const (
	codeOK                = 0
	codeCanceled          = 1
	codeUnknown           = 2
	codeDeadlineExceeded  = 4
	codeResourceExhausted = 8
	codeAborted           = 10
	codeOutOfRange        = 11
	codeUnimplemented     = 12
	codeInternal          = 13
	codeUnavailable       = 14
	codeDataLoss          = 15
	codeUnauthenticated   = 16
	codePermissionDenied  = 7
)

// GRPCError is a call's non-OK gRPC status.
type GRPCError struct {
	Code    int
	Message string
}

func (e *GRPCError) Error() string {
	return fmt.Sprintf("rpc error: code = %d desc = %s", e.Code, e.Message)
}

// grpcMethod is each signal's Export method, as a request path.
var grpcMethod = map[Signal]string{
	Traces:  "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
	Metrics: "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
}

// newGRPCSender makes unary gRPC calls of the signal's Export method over
// HTTP/2: h2c to an http:// or insecure endpoint, TLS (cfg.tls or the
// system's roots) otherwise.
func newGRPCSender(cfg *config) (func(context.Context, []byte) ([]byte, error), func()) {
	dialer := &net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		DialContext:         dialer.DialContext,
		TLSHandshakeTimeout: 10 * time.Second,
		IdleConnTimeout:     5 * time.Minute,
		TLSClientConfig:     cfg.tls,
		Protocols:           new(http.Protocols),
	}
	target := *cfg.target
	if cfg.insecure {
		target.Scheme = "http"
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		target.Scheme = "https"
		tr.Protocols.SetHTTP2(true)
	}
	if cfg.socket != "" {
		tr.DialContext = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return dialer.DialContext(ctx, "unix", cfg.socket)
		}
	} else if !cfg.insecure {
		// grpc-go tunnels through HTTPS_PROXY with CONNECT; net/http does
		// the same for an https:// target, not for h2c.
		tr.Proxy = http.ProxyFromEnvironment
	}
	target.Path = grpcMethod[cfg.signal]
	endpoint := target.String()

	header := http.Header{}
	for k, v := range cfg.headers {
		header.Set(strings.ToLower(k), v)
	}
	header.Set("Content-Type", "application/grpc")
	header.Set("Te", "trailers")
	header.Set("User-Agent", userAgent)
	header.Set("Grpc-Accept-Encoding", "gzip")
	if cfg.gzip {
		header.Set("Grpc-Encoding", "gzip")
	}
	// No redirect is followed, as grpc-go follows none: the headers (an
	// API key) would go wherever the answer points.
	hc := &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	send := func(ctx context.Context, msg []byte) ([]byte, error) {
		body := make([]byte, 5+len(msg))
		if cfg.gzip {
			body[0] = 1
		}
		binary.BigEndian.PutUint32(body[1:5], uint32(len(msg)))
		copy(body[5:], msg)
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, bytes.NewReader(body))
		if err != nil {
			return nil, err
		}
		req.Header = header.Clone()
		if d, ok := ctx.Deadline(); ok {
			req.Header.Set("Grpc-Timeout", grpcTimeout(time.Until(d)))
		}
		resp, err := hc.Do(req)
		if err != nil {
			// Nothing reached the server's method: grpc-go calls this
			// Unavailable, which is retried.
			return nil, &retryable{err: &GRPCError{Code: codeUnavailable, Message: err.Error()}}
		}
		defer resp.Body.Close()
		return readGRPCResponse(resp)
	}
	return send, tr.CloseIdleConnections
}

// readGRPCResponse reads a unary call's answer: the response message, then
// the status from the trailers or, in a trailers-only answer, the headers.
func readGRPCResponse(resp *http.Response) ([]byte, error) {
	if resp.StatusCode != http.StatusOK {
		// Not from a gRPC server's method: the spec's HTTP to gRPC mapping.
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
		return nil, statusErr(httpToGRPC(resp.StatusCode), "unexpected HTTP status "+resp.Status, "")
	}
	var msg []byte
	var frameErr error
	if resp.Header.Get("Grpc-Status") == "" {
		var compressed bool
		msg, compressed, frameErr = readFrame(resp.Body, maxResponseBytes)
		switch {
		case frameErr == io.EOF:
			frameErr, msg = nil, nil
		case frameErr == nil && compressed:
			if enc := resp.Header.Get("Grpc-Encoding"); enc != "gzip" {
				frameErr = fmt.Errorf("grpc: compressed response in unsupported encoding %q", enc)
			} else {
				msg, frameErr = gunzip(msg, maxResponseBytes)
			}
		}
		if frameErr == nil {
			// Drain to the end, where the trailers are.
			_, frameErr = io.Copy(io.Discard, io.LimitReader(resp.Body, maxResponseBytes))
		}
	}
	st := resp.Trailer.Get("Grpc-Status")
	h := resp.Trailer
	if st == "" {
		st, h = resp.Header.Get("Grpc-Status"), resp.Header
	}
	if st == "" {
		if frameErr != nil {
			return nil, &retryable{err: &GRPCError{Code: codeUnavailable, Message: frameErr.Error()}}
		}
		return nil, &GRPCError{Code: codeInternal, Message: "grpc: the server sent no grpc-status"}
	}
	code, err := strconv.Atoi(st)
	if err != nil || code < 0 {
		return nil, &GRPCError{Code: codeUnknown, Message: fmt.Sprintf("grpc: malformed grpc-status %q", st)}
	}
	if code != codeOK {
		return nil, statusErr(code, decodeGRPCMessage(h.Get("Grpc-Message")), h.Get("Grpc-Status-Details-Bin"))
	}
	if frameErr != nil {
		return nil, &GRPCError{Code: codeInternal, Message: frameErr.Error()}
	}
	return msg, nil
}

// statusErr is a non-OK status, wrapped as retryable when the official
// exporter retries it: a transient code, with the server's RetryInfo
// delay if it sent one; ResourceExhausted only with a RetryInfo (the
// server said when).
func statusErr(code int, msg, details string) error {
	e := &GRPCError{Code: code, Message: msg}
	var delay time.Duration
	var hasInfo bool
	if details != "" {
		if bin, err := decodeBinHeader(details); err == nil {
			delay, hasInfo, _ = retryInfo(bin)
		}
	}
	switch code {
	case codeCanceled, codeDeadlineExceeded, codeAborted, codeOutOfRange, codeUnavailable, codeDataLoss:
		return &retryable{err: e, throttle: delay}
	case codeResourceExhausted:
		if hasInfo {
			return &retryable{err: e, throttle: delay}
		}
	}
	return e
}

// httpToGRPC is gRPC's mapping of an HTTP status from something other than
// a gRPC server (doc/http-grpc-status-mapping.md).
func httpToGRPC(status int) int {
	switch status {
	case http.StatusBadRequest:
		return codeInternal
	case http.StatusUnauthorized:
		return codeUnauthenticated
	case http.StatusForbidden:
		return codePermissionDenied
	case http.StatusNotFound:
		return codeUnimplemented
	case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return codeUnavailable
	}
	return codeUnknown
}

// grpcTimeout is d as a grpc-timeout header: at most 8 digits and a unit.
func grpcTimeout(d time.Duration) string {
	if d <= 0 {
		return "1n"
	}
	for _, u := range []struct {
		unit string
		d    time.Duration
	}{{"n", time.Nanosecond}, {"u", time.Microsecond}, {"m", time.Millisecond}, {"S", time.Second}, {"M", time.Minute}} {
		if n := (d + u.d - 1) / u.d; n < 1e8 {
			return strconv.FormatInt(int64(n), 10) + u.unit
		}
	}
	return strconv.FormatInt(int64(min((d+time.Hour-1)/time.Hour, 1e8-1)), 10) + "H"
}

// decodeGRPCMessage undoes grpc-message's percent-encoding; a malformed
// one is shown as it came.
func decodeGRPCMessage(s string) string {
	if d, err := url.PathUnescape(s); err == nil {
		return d
	}
	return s
}

// decodeBinHeader decodes a -bin metadata value: base64, padded or not.
func decodeBinHeader(v string) ([]byte, error) {
	if len(v)%4 == 0 {
		return base64.StdEncoding.DecodeString(v)
	}
	return base64.RawStdEncoding.DecodeString(v)
}

func gunzip(b []byte, limit int64) ([]byte, error) {
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, err
	}
	out, err := readLimited(zr, limit)
	if err != nil {
		return nil, errors.Join(errors.New("grpc: bad gzip response"), err)
	}
	return out, nil
}
