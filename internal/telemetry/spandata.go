package telemetry

import (
	"encoding/binary"
	"math"
	"sync"

	"go.opentelemetry.io/otel/attribute"
)

// A span's data, as the ring keeps it: its attributes, each
//
//	key (uvarint length, bytes) · type (one byte, attribute.Type) · value
//
// the value being one byte for a bool, eight (little-endian) for an int64
// or a float64's bits, a uvarint length and the bytes for a string, and for
// any other type a uvarint index into the span's spanExtra.attrs; then its
// name and status description, each a uvarint length and the bytes. Later
// attributes of the same key win when decoded, as in the SDK.

// dataCap is a new data buffer's capacity: a small call's server span
// takes about 450 bytes, its gateway span about 350.
const dataCap = 512

// maxPooledData bounds the buffers kept for reuse: a span that recorded a
// large argument value leaves its buffer to the collector.
const maxPooledData = 4 << 10

var dataPool = sync.Pool{New: func() any { b := make([]byte, 0, dataCap); return &b }}

// getData returns an empty buffer for a span's data.
func getData() *[]byte {
	b := dataPool.Get().(*[]byte)
	*b = (*b)[:0]
	return b
}

// putData gives back a buffer no slot or span refers to any more.
func putData(b *[]byte) {
	if cap(*b) <= maxPooledData {
		dataPool.Put(b)
	}
}

// appendAttrs appends the valid attributes of kvs; those of a type the data
// does not encode go to *extra, allocated when first needed.
func appendAttrs(b []byte, kvs []attribute.KeyValue, extra **spanExtra) []byte {
	for _, kv := range kvs {
		if !kv.Valid() {
			continue
		}
		b = appendString(b, string(kv.Key))
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
			b = appendString(append(b, byte(t)), kv.Value.AsString())
		default:
			if *extra == nil {
				*extra = &spanExtra{}
			}
			b = binary.AppendUvarint(append(b, byte(t)), uint64(len((*extra).attrs)))
			(*extra).attrs = append((*extra).attrs, kv)
		}
	}
	return b
}

// appendName appends a span's name and status description, after its
// attributes.
func appendName(b []byte, name, desc string) []byte {
	return appendString(appendString(b, name), desc)
}

func appendString(b []byte, s string) []byte {
	if len(s) < 0x80 {
		b = append(b, byte(len(s)))
	} else {
		b = binary.AppendUvarint(b, uint64(len(s)))
	}
	return append(b, s...)
}

// readString reads what appendString appended at b[i:], and the index after
// it.
func readString(b []byte, i int) (string, int) {
	n, w := binary.Uvarint(b[i:])
	i += w
	return string(b[i : i+int(n)]), i + int(n)
}

func decodeName(b []byte) (name, desc string) {
	name, i := readString(b, 0)
	desc, _ = readString(b, i)
	return name, desc
}

// decodeAttrs returns the attributes b encodes as GET /debug/traces shows
// them (attribute.Value.AsInterface); nil when there are none.
func decodeAttrs(b []byte, extra *spanExtra) map[string]any {
	if len(b) == 0 {
		return nil
	}
	m := make(map[string]any)
	for i := 0; i < len(b); {
		var key string
		key, i = readString(b, i)
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
			m[key], i = readString(b, i)
		default:
			n, w := binary.Uvarint(b[i:])
			i += w
			m[key] = extra.attrs[n].Value.AsInterface()
		}
	}
	return m
}

// attrMap is kvs as GET /debug/traces shows them; nil when empty.
func attrMap(kvs []attribute.KeyValue) map[string]any {
	if len(kvs) == 0 {
		return nil
	}
	m := make(map[string]any, len(kvs))
	for _, kv := range kvs {
		if kv.Valid() {
			m[string(kv.Key)] = kv.Value.AsInterface()
		}
	}
	return m
}
