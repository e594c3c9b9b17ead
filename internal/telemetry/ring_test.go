package telemetry

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

func TestRingKeepsTheLastN(t *testing.T) {
	ring := NewRing(4)
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ring)).Tracer("t")
	base := time.Now()
	for i := range 10 {
		_, s := tr.Start(context.Background(), fmt.Sprint("span-", i), trace.WithTimestamp(base.Add(time.Duration(i)*time.Millisecond)))
		s.End(trace.WithTimestamp(base.Add(time.Duration(i)*time.Millisecond + time.Microsecond)))
	}
	got := ring.Spans()
	if len(got) != 4 {
		t.Fatalf("kept %d spans, want 4", len(got))
	}
	for i, s := range got {
		if want := fmt.Sprint("span-", 6+i); s.Name != want {
			t.Errorf("span %d = %q, want %q (oldest first)", i, s.Name, want)
		}
	}
}

func TestRingConcurrentWriters(t *testing.T) {
	ring := NewRing(64)
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ring)).Tracer("t")
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 500 {
				_, s := tr.Start(context.Background(), fmt.Sprint(w, "-", i))
				s.End()
				if i%50 == 0 {
					_ = ring.Spans() // readers alongside writers
				}
			}
		})
	}
	wg.Wait()
	if n := len(ring.Spans()); n != 64 {
		t.Errorf("kept %d, want 64", n)
	}
}

func TestSpanConversion(t *testing.T) {
	ring := NewRing(8)
	tr := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(ring)).Tracer("t")
	ctx, parent := tr.Start(context.Background(), "tools/call fetch_url", trace.WithSpanKind(trace.SpanKindServer),
		trace.WithAttributes(attribute.String("gen_ai.tool.name", "fetch_url"), attribute.Int("n", 3)))
	_, child := tr.Start(ctx, "mcpguard.policy")
	child.SetAttributes(attribute.String("mcpguard.policy.decision", "deny"))
	child.SetStatus(codes.Error, "denied")
	child.AddEvent("note", trace.WithAttributes(attribute.Bool("b", true)))
	child.End()
	parent.End()
	spans := ring.Spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans", len(spans))
	}
	p, c := spans[0], spans[1]
	if p.Kind != "server" || p.Attr("gen_ai.tool.name") != "fetch_url" || p.Attributes["n"] != int64(3) || p.ParentSpanID != "" {
		t.Errorf("parent = %+v", p)
	}
	if c.ParentSpanID != p.SpanID || c.TraceID != p.TraceID || c.Error != "denied" || c.Kind != "internal" ||
		len(c.Events) != 1 || c.Events[0].Attributes["b"] != true {
		t.Errorf("child = %+v", c)
	}
}
