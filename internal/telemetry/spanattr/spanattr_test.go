package spanattr

import (
	"bytes"
	"fmt"
	"testing"

	"go.opentelemetry.io/otel/attribute"
)

// TestBlock: a block encodes its attributes as Append does, invalid ones
// dropped, and decodes to them; one with a type the encoding does not hold
// is refused, and holds the others.
func TestBlock(t *testing.T) {
	kvs := []attribute.KeyValue{attribute.String("s", "v"), attribute.Int("i", -3), attribute.Bool("b", true),
		attribute.Float64("f", 0.5), {Key: "", Value: attribute.StringValue("invalid")}, attribute.String("s", "later")}
	b, ok := NewBlock(kvs...)
	if !ok {
		t.Fatal("refused")
	}
	want, odd := Append(nil, kvs, nil)
	if got := b.AppendTo(nil); !bytes.Equal(got, want) || len(odd) != 0 {
		t.Errorf("block encodes as %q, Append as %q", got, want)
	}
	if got, want := fmt.Sprint(b.Decode(nil)), fmt.Sprint(map[string]any{"s": "later", "i": int64(-3), "b": true, "f": 0.5}); got != want {
		t.Errorf("decodes to %s, want %s", got, want)
	}
	if len(b.KeyValues()) != 5 {
		t.Errorf("%d attributes kept, want the 5 valid", len(b.KeyValues()))
	}
	kvs[0] = attribute.String("s", "changed")
	if b.KeyValues()[0].Value.AsString() != "v" {
		t.Error("the block shares its caller's list")
	}
	// Refused, the block still holds (and decodes to, and copies) what it
	// can: the slice is left to the caller, not encoded as an index into a
	// list the block does not keep (which Decode, or a span the block is
	// copied into, would read).
	b, ok = NewBlock(attribute.String("s", "v"), attribute.StringSlice("ss", []string{"a"}), attribute.Int("i", 1))
	if ok {
		t.Error("a block with a slice accepted")
	}
	want, _ = Append(nil, []attribute.KeyValue{attribute.String("s", "v"), attribute.Int("i", 1)}, nil)
	if got := b.AppendTo(nil); !bytes.Equal(got, want) || len(b.KeyValues()) != 2 {
		t.Errorf("refused block encodes as %q with %d attributes, want %q with 2", got, len(b.KeyValues()), want)
	}
	if got := fmt.Sprint(b.Decode(nil)); got != fmt.Sprint(map[string]any{"s": "v", "i": int64(1)}) {
		t.Errorf("refused block decodes to %s", got)
	}
}
