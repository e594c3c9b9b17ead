// Package spanattr is how the span ring (internal/telemetry) keeps a span's
// attributes: encoded into one byte buffer, which the garbage collector
// does not scan and a full ring reuses (issue #18). Each attribute is
//
//	key (uvarint length, bytes) · type (one byte, attribute.Type) · value
//
// the value being one byte for a bool, eight (little-endian) for an int64
// or a float64's bits, a uvarint length and the bytes for a string, and for
// any other type a uvarint index into a list of such attributes kept beside
// the buffer. Later attributes of the same key win when decoded, as in the
// SDK.
//
// A Block is a list of attributes encoded once, which many spans refer to
// or copy: what every call of a session shares (its session, its
// connection, the gateway) costs a span a reference, not an encoding.
package spanattr

import (
	"encoding/binary"
	"math"

	"go.opentelemetry.io/otel/attribute"
)

// Append appends the valid attributes of kvs to b. Those of a type the
// encoding does not hold are appended to odd, which is returned, and
// referred to by their index in it.
func Append(b []byte, kvs []attribute.KeyValue, odd []attribute.KeyValue) ([]byte, []attribute.KeyValue) {
	for _, kv := range kvs {
		if !kv.Valid() {
			continue
		}
		b = AppendString(b, string(kv.Key))
		t := kv.Value.Type()
		switch t {
		case attribute.BOOL:
			v := byte(0)
			if kv.Value.AsBool() {
				v = 1
			}
			b = append(b, byte(t), v)
		case attribute.INT64:
			b = binary.LittleEndian.AppendUint64(append(b, byte(t)), uint64(kv.Value.AsInt64()))
		case attribute.FLOAT64:
			b = binary.LittleEndian.AppendUint64(append(b, byte(t)), math.Float64bits(kv.Value.AsFloat64()))
		case attribute.STRING:
			b = AppendString(append(b, byte(t)), kv.Value.AsString())
		default:
			b = binary.AppendUvarint(append(b, byte(t)), uint64(len(odd)))
			odd = append(odd, kv)
		}
	}
	return b, odd
}

// AppendString appends s as the encoding holds a string: its uvarint
// length, then its bytes.
func AppendString(b []byte, s string) []byte {
	if len(s) < 0x80 {
		b = append(b, byte(len(s)))
	} else {
		b = binary.AppendUvarint(b, uint64(len(s)))
	}
	return append(b, s...)
}

// ReadString reads what AppendString appended at b[i:], and returns the
// index after it.
func ReadString(b []byte, i int) (string, int) {
	n, w := binary.Uvarint(b[i:])
	i += w
	return string(b[i : i+int(n)]), i + int(n)
}

// Decode adds the attributes b encodes, with odd the list Append
// returned, to m as the ring shows them (attribute.Value.AsInterface), and
// returns m: made when nil and there are some.
func Decode(m map[string]any, b []byte, odd []attribute.KeyValue) map[string]any {
	if len(b) == 0 {
		return m
	}
	if m == nil {
		m = make(map[string]any)
	}
	for i := 0; i < len(b); {
		var key string
		key, i = ReadString(b, i)
		t := attribute.Type(b[i])
		i++
		switch t {
		case attribute.BOOL:
			m[key] = b[i] == 1
			i++
		case attribute.INT64:
			m[key] = int64(binary.LittleEndian.Uint64(b[i:]))
			i += 8
		case attribute.FLOAT64:
			m[key] = math.Float64frombits(binary.LittleEndian.Uint64(b[i:]))
			i += 8
		case attribute.STRING:
			m[key], i = ReadString(b, i)
		default:
			n, w := binary.Uvarint(b[i:])
			i += w
			m[key] = odd[n].Value.AsInterface()
		}
	}
	return m
}

// Block is a list of attributes of types the encoding holds (bool, int64,
// float64, string), encoded once. It does not change once made; its
// methods are safe for concurrent use.
type Block struct {
	kvs []attribute.KeyValue
	enc []byte
}

// NewBlock returns the block of the valid attributes of kvs, which are
// copied; ok is false when one is of a type the encoding does not hold
// (a slice): the block leaves those out, to be set as attributes of their
// own (encoded, they would refer to a list the block does not keep).
func NewBlock(kvs ...attribute.KeyValue) (b *Block, ok bool) {
	b, ok = &Block{kvs: make([]attribute.KeyValue, 0, len(kvs))}, true
	for _, kv := range kvs {
		switch {
		case !kv.Valid():
		case encodes(kv.Value.Type()):
			b.kvs = append(b.kvs, kv)
		default:
			ok = false
		}
	}
	b.enc, _ = Append(nil, b.kvs, nil)
	return b, ok
}

// encodes reports whether the encoding holds a value of type t itself.
func encodes(t attribute.Type) bool {
	switch t {
	case attribute.BOOL, attribute.INT64, attribute.FLOAT64, attribute.STRING:
		return true
	}
	return false
}

// KeyValues returns the block's attributes, in order; the caller must not
// change them.
func (b *Block) KeyValues() []attribute.KeyValue { return b.kvs }

// AppendTo appends the block's encoding to dst, as Append would encode its
// attributes.
func (b *Block) AppendTo(dst []byte) []byte { return append(dst, b.enc...) }

// Decode adds the block's attributes to m, as Decode does.
func (b *Block) Decode(m map[string]any) map[string]any { return Decode(m, b.enc, nil) }
