package otlp

import (
	"math"

	"mcpguard.dev/mcpguard/internal/protowire"

	"go.opentelemetry.io/otel/attribute"
)

// buf appends protobuf fields. A nested message is written in place: its
// length is first given one byte and the body moved along when it needs
// more, so no message is encoded twice or sized beforehand.
//
// Proto3 scalars equal to zero are left out, as the generated code does;
// message fields are written whenever the official exporters set them,
// even empty, because an empty message and an absent one differ.
type buf []byte

func (b *buf) tag(n protowire.Number, t protowire.Type) { *b = protowire.AppendTag(*b, n, t) }

func (b *buf) str(n protowire.Number, s string) {
	if s == "" {
		return
	}
	b.tag(n, protowire.BytesType)
	*b = protowire.AppendString(*b, s)
}

func (b *buf) bytes(n protowire.Number, v []byte) {
	if len(v) == 0 {
		return
	}
	b.tag(n, protowire.BytesType)
	*b = protowire.AppendBytes(*b, v)
}

func (b *buf) uvarint(n protowire.Number, v uint64) {
	if v == 0 {
		return
	}
	b.tag(n, protowire.VarintType)
	*b = protowire.AppendVarint(*b, v)
}

func (b *buf) sint32(n protowire.Number, v int32) {
	if v == 0 {
		return
	}
	b.tag(n, protowire.VarintType)
	*b = protowire.AppendVarint(*b, protowire.EncodeZigZag(int64(v)))
}

func (b *buf) fixed32(n protowire.Number, v uint32) {
	if v == 0 {
		return
	}
	b.tag(n, protowire.Fixed32Type)
	*b = protowire.AppendFixed32(*b, v)
}

func (b *buf) fixed64(n protowire.Number, v uint64) {
	if v == 0 {
		return
	}
	b.tag(n, protowire.Fixed64Type)
	*b = protowire.AppendFixed64(*b, v)
}

// double writes v even when zero: it is used for oneof members and
// optional fields, whose presence is the point.
func (b *buf) double(n protowire.Number, v float64) {
	b.tag(n, protowire.Fixed64Type)
	*b = protowire.AppendFixed64(*b, math.Float64bits(v))
}

// sfixed64 writes v even when zero, for oneof members.
func (b *buf) sfixed64(n protowire.Number, v int64) {
	b.tag(n, protowire.Fixed64Type)
	*b = protowire.AppendFixed64(*b, uint64(v))
}

// doubleNonZero is a plain proto3 double.
func (b *buf) doubleNonZero(n protowire.Number, v float64) {
	if v == 0 && !math.Signbit(v) {
		return
	}
	b.double(n, v)
}

func (b *buf) packedFixed64(n protowire.Number, v []uint64) {
	if len(v) == 0 {
		return
	}
	b.tag(n, protowire.BytesType)
	*b = protowire.AppendVarint(*b, uint64(8*len(v)))
	for _, x := range v {
		*b = protowire.AppendFixed64(*b, x)
	}
}

func (b *buf) packedDouble(n protowire.Number, v []float64) {
	if len(v) == 0 {
		return
	}
	b.tag(n, protowire.BytesType)
	*b = protowire.AppendVarint(*b, uint64(8*len(v)))
	for _, x := range v {
		*b = protowire.AppendFixed64(*b, math.Float64bits(x))
	}
}

func (b *buf) packedVarint(n protowire.Number, v []uint64) {
	if len(v) == 0 {
		return
	}
	size := 0
	for _, x := range v {
		size += protowire.SizeVarint(x)
	}
	b.tag(n, protowire.BytesType)
	*b = protowire.AppendVarint(*b, uint64(size))
	for _, x := range v {
		*b = protowire.AppendVarint(*b, x)
	}
}

// open starts message field n and returns where its body begins, for close.
func (b *buf) open(n protowire.Number) int {
	b.tag(n, protowire.BytesType)
	*b = append(*b, 0)
	return len(*b)
}

// close ends the message opened at start, writing its length.
func (b *buf) close(start int) {
	n := len(*b) - start
	size := protowire.SizeVarint(uint64(n))
	if size == 1 {
		(*b)[start-1] = byte(n)
		return
	}
	*b = append(*b, make([]byte, size-1)...)
	copy((*b)[start-1+size:], (*b)[start:start+n])
	protowire.AppendVarint((*b)[start-1:start-1], uint64(n))
}

// Field numbers of opentelemetry/proto/common/v1/common.proto.
const (
	anyString = 1
	anyBool   = 2
	anyInt    = 3
	anyDouble = 4
	anyArray  = 5
	anyKVList = 6
	anyBytes  = 7

	kvKey   = 1
	kvValue = 2

	scopeName       = 1
	scopeVersion    = 2
	scopeAttributes = 3

	resourceAttributes = 1
)

// keyValues writes attrs as repeated KeyValue field n.
func (b *buf) keyValues(n protowire.Number, attrs []attribute.KeyValue) {
	for _, kv := range attrs {
		b.keyValue(n, kv)
	}
}

// set writes an attribute set as repeated KeyValue field n.
func (b *buf) set(n protowire.Number, s *attribute.Set) {
	for it := s.Iter(); it.Next(); {
		b.keyValue(n, it.Attribute())
	}
}

func (b *buf) keyValue(n protowire.Number, kv attribute.KeyValue) {
	m := b.open(n)
	b.str(kvKey, string(kv.Key))
	b.anyValue(kvValue, kv.Value)
	b.close(m)
}

// anyValue writes v as AnyValue field n, the way the official exporters'
// transform does: every type, an empty value as an empty message.
func (b *buf) anyValue(n protowire.Number, v attribute.Value) {
	m := b.open(n)
	switch v.Type() {
	case attribute.BOOL:
		b.tag(anyBool, protowire.VarintType)
		*b = protowire.AppendVarint(*b, protowire.EncodeBool(v.AsBool()))
	case attribute.INT64:
		b.tag(anyInt, protowire.VarintType)
		*b = protowire.AppendVarint(*b, uint64(v.AsInt64()))
	case attribute.FLOAT64:
		b.double(anyDouble, v.AsFloat64())
	case attribute.STRING:
		b.tag(anyString, protowire.BytesType)
		*b = protowire.AppendString(*b, v.AsString())
	case attribute.BYTESLICE:
		b.tag(anyBytes, protowire.BytesType)
		*b = protowire.AppendBytes(*b, v.AsByteSlice())
	case attribute.BOOLSLICE:
		a := b.open(anyArray)
		for _, x := range v.AsBoolSlice() {
			b.anyValue(1, attribute.BoolValue(x))
		}
		b.close(a)
	case attribute.INT64SLICE:
		a := b.open(anyArray)
		for _, x := range v.AsInt64Slice() {
			b.anyValue(1, attribute.Int64Value(x))
		}
		b.close(a)
	case attribute.FLOAT64SLICE:
		a := b.open(anyArray)
		for _, x := range v.AsFloat64Slice() {
			b.anyValue(1, attribute.Float64Value(x))
		}
		b.close(a)
	case attribute.STRINGSLICE:
		a := b.open(anyArray)
		for _, x := range v.AsStringSlice() {
			b.anyValue(1, attribute.StringValue(x))
		}
		b.close(a)
	case attribute.SLICE:
		a := b.open(anyArray)
		for _, x := range v.AsSlice() {
			b.anyValue(1, x)
		}
		b.close(a)
	case attribute.MAP:
		a := b.open(anyKVList)
		b.keyValues(1, v.AsMap())
		b.close(a)
	case attribute.EMPTY:
	default:
		b.tag(anyString, protowire.BytesType)
		*b = protowire.AppendString(*b, "INVALID")
	}
	b.close(m)
}

// scope writes an InstrumentationScope (name, version, attributes) as
// field n.
func (b *buf) scope(n protowire.Number, name, version string, attrs *attribute.Set) {
	m := b.open(n)
	b.str(scopeName, name)
	b.str(scopeVersion, version)
	b.set(scopeAttributes, attrs)
	b.close(m)
}
