package telemetry

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/trace"
)

// TestRingKeepsWithoutAllocating holds the ring to its reason for being
// (issue #18): keeping a span allocates nothing, a span recorded after the
// fact (RecordSpan) allocates nothing at all, and a running span is one
// allocation beside its context, whatever its attributes.
func TestRingKeepsWithoutAllocating(t *testing.T) {
	ring := NewRing(64)
	tr := NewRingTracerProvider(ring).Tracer("x").(*ringTracer)
	attrs := []attribute.KeyValue{attribute.String("mcp.method.name", "tools/call"), attribute.String("gen_ai.tool.name", "fetch_url"),
		attribute.Int("server.port", 8080), attribute.Bool("mcpguard.policy.blocked", false), attribute.Float64("mcpguard.policy.duration", 1e-6)}
	ctx, parent := tr.Start(context.Background(), "tools/call fetch_url")
	defer parent.End()
	t0 := time.Unix(1000, 0)
	for range 2 * ring.Size() { // fill the ring: its buffers are then reused
		tr.RecordSpan(ctx, "mcpguard.policy", trace.SpanKindInternal, t0, t0, attrs, "")
	}
	if n := testing.AllocsPerRun(1000, func() {
		tr.RecordSpan(ctx, "mcpguard.policy", trace.SpanKindInternal, t0, t0, attrs, "denied")
	}); n != 0 {
		t.Errorf("RecordSpan: %v allocations, want 0", n)
	}
	later := []attribute.KeyValue{attribute.Int("http.response.status_code", 200), attribute.String("error.type", "500")}
	if n := testing.AllocsPerRun(1000, func() {
		_, s := tr.StartSpan(ctx, "tools/call fetch_url", trace.SpanKindClient, t0, attrs)
		s.SetAttributes(later...)
		s.(*ringSpan).EndAt(t0)
	}); n != 2 {
		t.Errorf("StartSpan, SetAttributes, EndAt: %v allocations, want 2 (the span and its context)", n)
	}
}

// TestSpanDataRoundTrip: what the ring decodes is what was recorded, for
// every attribute type, later values of a key winning, invalid attributes
// dropped, long strings and names.
func TestSpanDataRoundTrip(t *testing.T) {
	long := string(make([]byte, 300))
	kvs := []attribute.KeyValue{
		attribute.Bool("b", true), attribute.Bool("f", false), attribute.Int64("i", -7), attribute.Float64("x", 0.25),
		attribute.String("s", "ü\x00\""), attribute.String("long", long), attribute.StringSlice("ss", []string{"a", "b"}),
		attribute.Int64Slice("is", []int64{1, 2}), {Key: "", Value: attribute.StringValue("invalid")},
		attribute.String("s", "later"), attribute.String("", "no key"),
	}
	var extra *spanExtra
	b := appendAttrs(nil, kvs, &extra)
	n := len(b)
	b = appendName(b, "name "+long, "desc")
	got := decodeAttrs(b[:n], extra)
	want := map[string]any{"b": true, "f": false, "i": int64(-7), "x": 0.25, "s": "later", "long": long,
		"ss": []string{"a", "b"}, "is": []int64{1, 2}}
	if len(got) != len(want) {
		t.Fatalf("decoded %v, want %v", got, want)
	}
	for k, v := range want {
		if g := got[k]; attribute.NewSet(attribute.KeyValue{Key: attribute.Key(k), Value: valueOf(g)}) !=
			attribute.NewSet(attribute.KeyValue{Key: attribute.Key(k), Value: valueOf(v)}) {
			t.Errorf("%s = %#v, want %#v", k, g, v)
		}
	}
	if name, desc := decodeName(b[n:]); name != "name "+long || desc != "desc" {
		t.Errorf("name %q, desc %q", name, desc)
	}
}

func valueOf(v any) attribute.Value {
	switch v := v.(type) {
	case bool:
		return attribute.BoolValue(v)
	case int64:
		return attribute.Int64Value(v)
	case float64:
		return attribute.Float64Value(v)
	case string:
		return attribute.StringValue(v)
	case []string:
		return attribute.StringSliceValue(v)
	case []int64:
		return attribute.Int64SliceValue(v)
	}
	return attribute.Value{}
}

// TestRingReusesBuffersSafely: with a small ring lapped by writers while
// readers decode it, every span read is whole, its name and attributes
// from the same span, though their buffers pass from slot to span to slot.
func TestRingReusesBuffersSafely(t *testing.T) {
	ring := NewRing(8)
	tr := NewRingTracerProvider(ring).Tracer("x").(*ringTracer)
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := range 2000 {
				id := fmt.Sprint(w, "-", i)
				ctx, s := tr.StartSpan(context.Background(), "span "+id, trace.SpanKindServer, time.Time{},
					[]attribute.KeyValue{attribute.String("id", id)})
				tr.RecordSpan(ctx, "policy "+id, trace.SpanKindInternal, time.Time{}, time.Time{},
					[]attribute.KeyValue{attribute.String("id", id), attribute.String("pad", strings.Repeat("x", i%700))}, "")
				s.SetAttributes(attribute.String("later", id))
				s.End()
			}
		})
	}
	for range 2 {
		wg.Go(func() {
			for range 300 {
				for _, s := range ring.Spans() {
					id := s.Attr("id")
					if s.Name != "span "+id && s.Name != "policy "+id {
						t.Errorf("span %q has id %q", s.Name, id)
						return
					}
					if strings.HasPrefix(s.Name, "span ") && s.Attr("later") != id {
						t.Errorf("span %q has later %q", s.Name, s.Attr("later"))
						return
					}
				}
			}
		})
	}
	wg.Wait()
}

// TestRingSlotsAllocatedAsReached: a ring holds no slot memory for spans
// it has not kept yet (idle memory, #18), and whatever its size against
// the allocation chunk it keeps exactly the last Size spans.
func TestRingSlotsAllocatedAsReached(t *testing.T) {
	for _, tc := range []struct{ size, kept int }{
		{1, 0}, {1, 3}, {ringChunk, ringChunk}, {ringChunk + 1, ringChunk}, {ringChunk + 1, ringChunk + 1},
		{3*ringChunk - 5, 2}, {3*ringChunk - 5, 7 * ringChunk}, {2048, 100},
	} {
		t.Run(fmt.Sprintf("size%d_kept%d", tc.size, tc.kept), func(t *testing.T) {
			ring := NewRing(tc.size)
			tr := NewRingTracerProvider(ring).Tracer("x").(*ringTracer)
			for i := range tc.kept {
				at := time.Unix(1000, int64(i))
				tr.RecordSpan(context.Background(), fmt.Sprint(i), trace.SpanKindInternal, at, at, nil, "")
			}
			allocated := 0
			for c := range ring.chunks {
				if ring.chunks[c].Load() != nil {
					allocated++
				}
			}
			if want := (min(tc.kept, tc.size) + ringChunk - 1) / ringChunk; allocated != want {
				t.Errorf("%d chunks allocated, want %d", allocated, want)
			}
			spans := ring.Spans()
			if want := min(tc.kept, tc.size); len(spans) != want {
				t.Fatalf("%d spans kept, want %d", len(spans), want)
			}
			for i, s := range spans {
				if want := fmt.Sprint(tc.kept - len(spans) + i); s.Name != want {
					t.Fatalf("span %d is %q, want %q (the last %d, oldest first)", i, s.Name, want, tc.size)
				}
			}
		})
	}
}
