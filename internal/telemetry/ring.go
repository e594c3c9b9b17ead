package telemetry

import (
	"context"
	"sort"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// Ring keeps the last N ended spans in memory, for `mcpguard traces` and the
// admin page when no collector runs. It is an SDK span processor, and the
// store of NewRingTracerProvider's spans. Keeping a span costs one atomic
// add and one atomic store: no lock, no copy (the SDK hands processors an
// immutable snapshot, kept as it is). Reading converts what it returns.
type Ring struct {
	slots []atomic.Pointer[entry]
	next  atomic.Uint64
}

// entry is one kept span: an SDK snapshot or a ring tracer span.
type entry struct {
	sdk sdktrace.ReadOnlySpan
	own *ringSpan
}

var _ sdktrace.SpanProcessor = (*Ring)(nil)

// NewRing returns a ring keeping the last n spans (n > 0).
func NewRing(n int) *Ring {
	return &Ring{slots: make([]atomic.Pointer[entry], n)}
}

// Size returns how many spans the ring keeps.
func (r *Ring) Size() int { return len(r.slots) }

// OnStart does nothing: only ended spans are kept.
func (r *Ring) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd keeps s, replacing the oldest span once the ring is full.
func (r *Ring) OnEnd(s sdktrace.ReadOnlySpan) { r.keep(&entry{sdk: s}) }

// keep stores e, which is never changed after.
func (r *Ring) keep(e *entry) {
	i := r.next.Add(1) - 1
	r.slots[i%uint64(len(r.slots))].Store(e)
}

// Shutdown does nothing; the spans stay readable.
func (r *Ring) Shutdown(context.Context) error { return nil }

// ForceFlush does nothing: there is nothing to flush.
func (r *Ring) ForceFlush(context.Context) error { return nil }

// Spans returns the kept spans, oldest start first.
func (r *Ring) Spans() []Span {
	out := make([]Span, 0, min(int(r.next.Load()), len(r.slots)))
	for i := range r.slots {
		switch p := r.slots[i].Load(); {
		case p == nil:
		case p.own != nil:
			out = append(out, p.own.span())
		default:
			out = append(out, spanOf(p.sdk))
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// Span is the JSON form of a kept span (GET /debug/traces).
type Span struct {
	TraceID      string         `json:"traceId"`
	SpanID       string         `json:"spanId"`
	ParentSpanID string         `json:"parentSpanId,omitempty"`
	Name         string         `json:"name"`
	Kind         string         `json:"kind"`
	Start        time.Time      `json:"start"`
	End          time.Time      `json:"end"`
	Error        string         `json:"error,omitempty"` // the status description of a span with status Error
	Attributes   map[string]any `json:"attributes,omitempty"`
	Events       []Event        `json:"events,omitempty"`
}

// Event is a span event.
type Event struct {
	Name       string         `json:"name"`
	Time       time.Time      `json:"time"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Duration is End − Start.
func (s *Span) Duration() time.Duration { return s.End.Sub(s.Start) }

// Attr returns a string attribute, or "".
func (s *Span) Attr(key string) string {
	v, _ := s.Attributes[key].(string)
	return v
}

func spanOf(s sdktrace.ReadOnlySpan) Span {
	out := Span{
		TraceID: s.SpanContext().TraceID().String(),
		SpanID:  s.SpanContext().SpanID().String(),
		Name:    s.Name(),
		Kind:    s.SpanKind().String(),
		Start:   s.StartTime(),
		End:     s.EndTime(),
	}
	if p := s.Parent(); p.IsValid() {
		out.ParentSpanID = p.SpanID().String()
	}
	if st := s.Status(); st.Code == codes.Error {
		out.Error = st.Description
		if out.Error == "" {
			out.Error = "error"
		}
	}
	if attrs := s.Attributes(); len(attrs) > 0 {
		out.Attributes = make(map[string]any, len(attrs))
		for _, kv := range attrs {
			out.Attributes[string(kv.Key)] = kv.Value.AsInterface()
		}
	}
	for _, e := range s.Events() {
		ev := Event{Name: e.Name, Time: e.Time}
		if len(e.Attributes) > 0 {
			ev.Attributes = make(map[string]any, len(e.Attributes))
			for _, kv := range e.Attributes {
				ev.Attributes[string(kv.Key)] = kv.Value.AsInterface()
			}
		}
		out.Events = append(out.Events, ev)
	}
	return out
}
