package telemetry

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/trace"
	"go.opentelemetry.io/otel/trace/embedded"
)

// NewRingTracerProvider returns a TracerProvider that records every span
// straight into r, without the SDK. Setup uses it when spans are only
// inspected locally: no exporter and no sampler configured. The SDK's
// per-span machinery then costs more than it gives. A span needs a few
// small allocations and no processing at its end, and the ring keeps the
// span itself. Every span is recorded, whatever the parent's sampled
// flag; the flag is propagated as it came.
func NewRingTracerProvider(r *Ring) trace.TracerProvider {
	p := &ringProvider{ring: r}
	p.tracer = &ringTracer{p: p}
	return p
}

type ringProvider struct {
	embedded.TracerProvider
	ring   *Ring
	tracer *ringTracer
}

// Tracer returns the provider's one tracer: scopes are not recorded.
func (p *ringProvider) Tracer(string, ...trace.TracerOption) trace.Tracer { return p.tracer }

type ringTracer struct {
	embedded.Tracer
	p *ringProvider
}

// Start begins a span, a child of ctx's span unless WithNewRoot.
func (t *ringTracer) Start(ctx context.Context, name string, opts ...trace.SpanStartOption) (context.Context, trace.Span) {
	cfg := trace.NewSpanStartConfig(opts...)
	parent := trace.SpanContextFromContext(ctx)
	if cfg.NewRoot() {
		parent = trace.SpanContext{}
	}
	s := t.newSpan(parent, name, cfg.SpanKind(), cfg.Timestamp(), cfg.Attributes(), laterAttrs)
	return trace.ContextWithSpan(ctx, s), s
}

// StartSpan is Start with the span's fields given as they are rather than
// as options, which the caller would box one by one: the proxy's fast path
// for every span of a call. attrs are copied.
func (t *ringTracer) StartSpan(ctx context.Context, name string, kind trace.SpanKind, start time.Time, attrs []attribute.KeyValue) (context.Context, trace.Span) {
	s := t.newSpan(trace.SpanContextFromContext(ctx), name, kind, start, attrs, laterAttrs)
	return trace.ContextWithSpan(ctx, s), s
}

// RecordSpan records a span under ctx's span from start to end, with
// nothing run under it (so no context is made for it); a non-empty errDesc
// sets status Error with that description.
func (t *ringTracer) RecordSpan(ctx context.Context, name string, kind trace.SpanKind, start, end time.Time, attrs []attribute.KeyValue, errDesc string) {
	s := t.newSpan(trace.SpanContextFromContext(ctx), name, kind, start, attrs, 0)
	if errDesc != "" {
		s.status, s.statusDesc = codes.Error, errDesc
	}
	s.EndAt(end)
}

// laterAttrs is room for the few attributes a span gets after its start,
// so those do not copy the list again: at most five on a call's server
// span (decision, rule, recorded arguments, error type, status code), two
// on a gateway call's (status code, error type).
const laterAttrs = 5

func (t *ringTracer) newSpan(parent trace.SpanContext, name string, kind trace.SpanKind, start time.Time, attrs []attribute.KeyValue, later int) *ringSpan {
	scc := trace.SpanContextConfig{SpanID: newSpanID(), TraceFlags: trace.FlagsSampled}
	if parent.IsValid() {
		scc.TraceID, scc.TraceFlags, scc.TraceState = parent.TraceID(), parent.TraceFlags(), parent.TraceState()
	} else {
		scc.TraceID = newTraceID()
	}
	s := allocSpan(len(attrs) + later)
	s.p, s.sc, s.parent, s.name, s.kind, s.start = t.p, trace.NewSpanContext(scc), parent, name, kind, start
	s.attrs = append(s.attrs, attrs...)
	if s.start.IsZero() {
		s.start = time.Now()
	}
	if s.kind == trace.SpanKindUnspecified {
		s.kind = trace.SpanKindInternal
	}
	return s
}

// allocSpan allocates a span with room for n attributes in the same
// allocation. The room comes in steps of two, each filling its allocator
// size class (a ringSpan is 336 bytes, an attribute 64): a call's spans are
// most of the garbage of a small call and of what the ring keeps, and a
// room of 20 for every call span wasted a fifth of each.
func allocSpan(n int) *ringSpan {
	switch {
	case n <= 8:
		return spanWith(func(a *[8]attribute.KeyValue) []attribute.KeyValue { return a[:0] })
	case n <= 10:
		return spanWith(func(a *[10]attribute.KeyValue) []attribute.KeyValue { return a[:0] })
	case n <= 12:
		return spanWith(func(a *[12]attribute.KeyValue) []attribute.KeyValue { return a[:0] })
	case n <= 14:
		return spanWith(func(a *[14]attribute.KeyValue) []attribute.KeyValue { return a[:0] })
	case n <= 16:
		return spanWith(func(a *[16]attribute.KeyValue) []attribute.KeyValue { return a[:0] })
	case n <= 18:
		return spanWith(func(a *[18]attribute.KeyValue) []attribute.KeyValue { return a[:0] })
	case n <= 22:
		return spanWith(func(a *[22]attribute.KeyValue) []attribute.KeyValue { return a[:0] })
	}
	return &ringSpan{attrs: make([]attribute.KeyValue, 0, n)}
}

// spanWith allocates a span and its attribute room (an array, A) as one
// object; room slices the array. Go has no array length as a type
// parameter, so each size is named by allocSpan.
func spanWith[A any](room func(*A) []attribute.KeyValue) *ringSpan {
	b := new(struct {
		s ringSpan
		a A
	})
	b.s.attrs = room(&b.a)
	return &b.s
}

func newTraceID() trace.TraceID {
	var id trace.TraceID
	for id == (trace.TraceID{}) {
		hi, lo := rand.Uint64(), rand.Uint64()
		for i := range 8 {
			id[i], id[8+i] = byte(hi>>(8*i)), byte(lo>>(8*i))
		}
	}
	return id
}

func newSpanID() trace.SpanID {
	var id trace.SpanID
	for id == (trace.SpanID{}) {
		v := rand.Uint64()
		for i := range 8 {
			id[i] = byte(v >> (8 * i))
		}
	}
	return id
}

// ringSpan is a span of the ring tracer. Its methods are safe for
// concurrent use; after End it no longer changes.
type ringSpan struct {
	embedded.Span
	p      *ringProvider
	sc     trace.SpanContext
	parent trace.SpanContext

	mu         sync.Mutex
	name       string
	kind       trace.SpanKind
	start, end time.Time
	attrs      []attribute.KeyValue
	events     []Event
	status     codes.Code
	statusDesc string
	ended      bool
	// kept is the span's entry in the ring, allocated with it.
	kept entry
}

func (s *ringSpan) End(opts ...trace.SpanEndOption) {
	cfg := trace.NewSpanEndConfig(opts...)
	s.EndAt(cfg.Timestamp())
}

// EndAt is End at a time the caller has already read (zero: now), without
// boxing it in an option.
func (s *ringSpan) EndAt(end time.Time) {
	s.mu.Lock()
	if s.ended {
		s.mu.Unlock()
		return
	}
	s.ended = true
	s.end = end
	if s.end.IsZero() {
		s.end = time.Now()
	}
	s.kept.own = s
	s.mu.Unlock()
	s.p.ring.keep(&s.kept)
}

func (s *ringSpan) AddEvent(name string, opts ...trace.EventOption) {
	cfg := trace.NewEventConfig(opts...)
	ev := Event{Name: name, Time: cfg.Timestamp(), Attributes: attrMap(cfg.Attributes())}
	s.mu.Lock()
	if !s.ended {
		s.events = append(s.events, ev)
	}
	s.mu.Unlock()
}

// AddLink does nothing: the local views show no links.
func (s *ringSpan) AddLink(trace.Link) {}

func (s *ringSpan) IsRecording() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !s.ended
}

func (s *ringSpan) RecordError(err error, opts ...trace.EventOption) {
	if err == nil {
		return
	}
	s.AddEvent("exception", append(opts, trace.WithAttributes(attribute.String("exception.message", err.Error())))...)
}

func (s *ringSpan) SpanContext() trace.SpanContext { return s.sc }

// SetStatus follows the API's precedence: Ok is final, Error beats Unset,
// and a description is kept only with Error.
func (s *ringSpan) SetStatus(code codes.Code, description string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended || s.status == codes.Ok || code == codes.Unset {
		return
	}
	s.status, s.statusDesc = code, ""
	if code == codes.Error {
		s.statusDesc = description
	}
}

func (s *ringSpan) SetName(name string) {
	s.mu.Lock()
	if !s.ended {
		s.name = name
	}
	s.mu.Unlock()
}

func (s *ringSpan) SetAttributes(kv ...attribute.KeyValue) {
	s.mu.Lock()
	if !s.ended {
		s.attrs = append(s.attrs, kv...)
	}
	s.mu.Unlock()
}

func (s *ringSpan) TracerProvider() trace.TracerProvider { return s.p }

// span converts an ended span for the views; later attributes win, as in
// the SDK.
func (s *ringSpan) span() Span {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := Span{TraceID: s.sc.TraceID().String(), SpanID: s.sc.SpanID().String(), Name: s.name,
		Kind: s.kind.String(), Start: s.start, End: s.end, Attributes: attrMap(s.attrs), Events: s.events}
	if s.parent.IsValid() {
		out.ParentSpanID = s.parent.SpanID().String()
	}
	if s.status == codes.Error {
		out.Error = s.statusDesc
		if out.Error == "" {
			out.Error = "error"
		}
	}
	return out
}

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
