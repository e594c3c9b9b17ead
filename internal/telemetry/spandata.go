package telemetry

import (
	"sync"

	"go.opentelemetry.io/otel/attribute"

	"mcpguard.dev/mcpguard/internal/telemetry/spanattr"
)

// A span's data, as the ring keeps it: its attributes as spanattr encodes
// them, those of other types in the span's spanExtra.attrs; then its name
// and status description, each a spanattr string.

// dataCap is a new data buffer's capacity: beside the blocks it shares
// (spanBlocks), a small call's server span takes 44 bytes, its gateway
// span 79, its policy span 103 (BenchmarkCallCost); 408-468, 320 and 223
// when every attribute was encoded into the span's own data.
const dataCap = 128

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

// appendAttrs appends the valid attributes of kvs; those of a type the
// data does not encode go to *extra, allocated when first needed.
func appendAttrs(b []byte, kvs []attribute.KeyValue, extra **spanExtra) []byte {
	var odd []attribute.KeyValue
	if *extra != nil {
		odd = (*extra).attrs
	}
	b, more := spanattr.Append(b, kvs, odd)
	if len(more) != len(odd) {
		if *extra == nil {
			*extra = &spanExtra{}
		}
		(*extra).attrs = more
	}
	return b
}

// appendName appends a span's name and status description, after its
// attributes.
func appendName(b []byte, name, desc string) []byte {
	return spanattr.AppendString(spanattr.AppendString(b, name), desc)
}

func decodeName(b []byte) (name, desc string) {
	name, i := spanattr.ReadString(b, 0)
	desc, _ = spanattr.ReadString(b, i)
	return name, desc
}

// decodeAttrs returns the attributes b encodes, with those of the blocks
// among them, as GET /debug/traces shows them
// (attribute.Value.AsInterface); nil when there are none.
func decodeAttrs(b []byte, blocks *spanBlocks, extra *spanExtra) map[string]any {
	var odd []attribute.KeyValue
	if extra != nil {
		odd = extra.attrs
	}
	var m map[string]any
	from := 0
	for i, blk := range blocks.b {
		if blk == nil {
			break
		}
		at := int(blocks.at[i])
		m = blk.Decode(spanattr.Decode(m, b[from:at], odd))
		from = at
	}
	return spanattr.Decode(m, b[from:], odd)
}

// spanBlocks are the blocks (spanattr.Block) a span's attributes include
// by reference, in the order they were added, each where the data then
// ended: the attributes of a session's calls in common are then kept once,
// not in every span's data (issue #18). A span's blocks past these are
// copied into its data.
type spanBlocks struct {
	b  [3]*spanattr.Block
	at [3]uint32
}

// add appends blk to data, by reference when there is room.
func (bs *spanBlocks) add(data []byte, blk *spanattr.Block) []byte {
	for i := range bs.b {
		if bs.b[i] == nil {
			bs.b[i], bs.at[i] = blk, uint32(len(data))
			return data
		}
	}
	return blk.AppendTo(data)
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
