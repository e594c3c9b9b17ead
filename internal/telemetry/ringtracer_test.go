package telemetry

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
)

func TestRingTracer(t *testing.T) {
	ring := NewRing(16)
	tp := NewRingTracerProvider(ring)
	tr := tp.Tracer("x")

	remote := trace.NewSpanContext(trace.SpanContextConfig{
		TraceID: [16]byte{0x4b, 0xf9, 1}, SpanID: [8]byte{0xf0, 0x67, 1}, Remote: true,
		TraceFlags: 0, // the agent did not sample: propagated as it came
	})
	ts, _ := trace.ParseTraceState("vendor=agent")
	remote = remote.WithTraceState(ts)
	ctx := trace.ContextWithRemoteSpanContext(context.Background(), remote)
	t0 := time.Unix(1000, 0)
	ctx, server := tr.Start(ctx, "tools/call x", trace.WithSpanKind(trace.SpanKindServer), trace.WithTimestamp(t0),
		trace.WithAttributes(attribute.String("a", "1"), attribute.Int("n", 2)))
	if !server.IsRecording() || server.SpanContext().TraceID() != remote.TraceID() || server.SpanContext().IsSampled() ||
		server.SpanContext().TraceState().Get("vendor") != "agent" || server.SpanContext().SpanID() == remote.SpanID() {
		t.Fatalf("server span context %+v", server.SpanContext())
	}
	if server.TracerProvider() != tp {
		t.Error("TracerProvider")
	}
	_, child := tr.Start(ctx, "mcpguard.policy")
	child.SetAttributes(attribute.String("a", "first"), attribute.String("a", "last"))
	child.SetStatus(codes.Error, "denied")
	child.SetStatus(codes.Unset, "") // Unset never overrides
	child.RecordError(errors.New("boom"))
	child.SetName("mcpguard.policy")
	child.End()
	child.SetAttributes(attribute.String("late", "x")) // after End: ignored
	child.End()                                        // twice: kept once
	_, root := tr.Start(ctx, "other", trace.WithNewRoot())
	root.End()
	server.SetStatus(codes.Ok, "")
	server.SetStatus(codes.Error, "too late") // Ok is final
	server.End(trace.WithTimestamp(t0.Add(time.Millisecond)))

	spans := ring.Spans()
	if len(spans) != 3 {
		t.Fatalf("%d spans kept, want 3", len(spans))
	}
	byName := map[string]Span{}
	for _, s := range spans {
		byName[s.Name] = s
	}
	srv, pol, other := byName["tools/call x"], byName["mcpguard.policy"], byName["other"]
	if srv.Kind != "server" || srv.ParentSpanID != remote.SpanID().String() || srv.Attributes["n"] != int64(2) ||
		srv.Duration() != time.Millisecond || srv.Error != "" {
		t.Errorf("server span %+v", srv)
	}
	if pol.Kind != "internal" || pol.ParentSpanID != srv.SpanID || pol.TraceID != srv.TraceID || pol.Attributes["a"] != "last" ||
		pol.Attributes["late"] != nil || pol.Error != "denied" || len(pol.Events) != 1 || pol.Events[0].Attributes["exception.message"] != "boom" {
		t.Errorf("policy span %+v", pol)
	}
	if other.ParentSpanID != "" || other.TraceID == srv.TraceID {
		t.Errorf("new root %+v", other)
	}
	calls := Calls(spans, Filter{})
	if len(calls) != 2 || len(calls[0].Children)+len(calls[1].Children) != 1 {
		t.Errorf("calls %+v", calls)
	}
}

func TestRingTracerConcurrent(t *testing.T) {
	ring := NewRing(128)
	tr := NewRingTracerProvider(ring).Tracer("x")
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 300 {
				ctx, s := tr.Start(context.Background(), "s")
				_, c := tr.Start(ctx, "c")
				go c.End() // ended from another goroutine, as a body close may be
				s.SetAttributes(attribute.Bool("b", true))
				s.End()
				_ = ring.Spans()
			}
		})
	}
	wg.Wait()
	ids := map[string]bool{}
	for _, s := range ring.Spans() {
		if ids[s.SpanID] {
			t.Fatalf("span id %s twice", s.SpanID)
		}
		ids[s.SpanID] = true
	}
}

// TestRingTracerFastPath: StartSpan and RecordSpan, the proxy's fast path
// (its spanRecorder interface), record what Start with options would.
func TestRingTracerFastPath(t *testing.T) {
	ring := NewRing(8)
	tr := NewRingTracerProvider(ring).Tracer("x").(interface {
		StartSpan(context.Context, string, trace.SpanKind, time.Time, []attribute.KeyValue) (context.Context, trace.Span)
		RecordSpan(context.Context, string, trace.SpanKind, time.Time, time.Time, []attribute.KeyValue, string)
	})
	t0 := time.Unix(1000, 0)
	attrs := []attribute.KeyValue{attribute.String("a", "1")}
	ctx, server := tr.StartSpan(context.Background(), "tools/call x", trace.SpanKindServer, t0, attrs)
	attrs[0] = attribute.String("a", "changed") // copied at the start
	if trace.SpanFromContext(ctx) != server {
		t.Fatal("the context does not carry the span")
	}
	tr.RecordSpan(ctx, "mcpguard.policy", trace.SpanKindInternal, t0.Add(time.Microsecond), t0.Add(2*time.Microsecond), []attribute.KeyValue{attribute.Bool("b", true)}, "denied")
	server.(interface{ EndAt(time.Time) }).EndAt(t0.Add(time.Millisecond))
	spans := ring.Spans()
	if len(spans) != 2 {
		t.Fatalf("%d spans kept, want 2", len(spans))
	}
	srv, pol := spans[0], spans[1]
	if srv.Name != "tools/call x" || srv.Kind != "server" || !srv.Start.Equal(t0) || srv.Attr("a") != "1" || !srv.End.Equal(t0.Add(time.Millisecond)) {
		t.Errorf("server span %+v", srv)
	}
	if pol.Name != "mcpguard.policy" || pol.Kind != "internal" || pol.ParentSpanID != srv.SpanID || pol.TraceID != srv.TraceID ||
		pol.Error != "denied" || pol.Attributes["b"] != true || !pol.Start.Equal(t0.Add(time.Microsecond)) || !pol.End.Equal(t0.Add(2*time.Microsecond)) {
		t.Errorf("policy span %+v", pol)
	}
}
