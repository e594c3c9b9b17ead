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
	s := t.newSpan(parent, name, cfg.SpanKind(), cfg.Timestamp(), cfg.Attributes())
	return trace.ContextWithSpan(ctx, s), s
}

// StartSpan is Start with the span's fields given as they are rather than
// as options, which the caller would box one by one: the proxy's fast path
// for every span of a call. attrs are copied.
func (t *ringTracer) StartSpan(ctx context.Context, name string, kind trace.SpanKind, start time.Time, attrs []attribute.KeyValue) (context.Context, trace.Span) {
	s := t.newSpan(trace.SpanContextFromContext(ctx), name, kind, start, attrs)
	return trace.ContextWithSpan(ctx, s), s
}

// RecordSpan records a span under ctx's span from start to end, with
// nothing run under it: straight into the ring, no span made for it and no
// context. A non-empty errDesc sets status Error with that description.
func (t *ringTracer) RecordSpan(ctx context.Context, name string, kind trace.SpanKind, start, end time.Time, attrs []attribute.KeyValue, errDesc string) {
	parent := trace.SpanContextFromContext(ctx)
	h := spanHead{spanID: newSpanID(), kind: kind, isErr: errDesc != ""}
	if parent.IsValid() {
		h.traceID, h.parentID, h.hasParent = parent.TraceID(), parent.SpanID(), true
	} else {
		h.traceID = newTraceID()
	}
	if h.kind == trace.SpanKindUnspecified {
		h.kind = trace.SpanKindInternal
	}
	if start.IsZero() {
		start = time.Now()
	}
	if end.IsZero() {
		end = time.Now()
	}
	h.start, h.end = start.UnixNano(), end.UnixNano()
	var extra *spanExtra
	data := getData()
	*data = appendAttrs(*data, attrs, &extra)
	h.attrs = len(*data)
	*data = appendName(*data, name, errDesc)
	t.p.ring.keep(&h, data, extra)
}

func (t *ringTracer) newSpan(parent trace.SpanContext, name string, kind trace.SpanKind, start time.Time, attrs []attribute.KeyValue) *ringSpan {
	scc := trace.SpanContextConfig{SpanID: newSpanID(), TraceFlags: trace.FlagsSampled}
	if parent.IsValid() {
		scc.TraceID, scc.TraceFlags, scc.TraceState = parent.TraceID(), parent.TraceFlags(), parent.TraceState()
	} else {
		scc.TraceID = newTraceID()
	}
	s := &ringSpan{p: t.p, sc: trace.NewSpanContext(scc), name: name, kind: kind, start: start, data: getData()}
	if parent.IsValid() {
		s.parent, s.hasParent = parent.SpanID(), true
	}
	*s.data = appendAttrs(*s.data, attrs, &s.extra)
	if s.start.IsZero() {
		s.start = time.Now()
	}
	if s.kind == trace.SpanKindUnspecified {
		s.kind = trace.SpanKindInternal
	}
	return s
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

// ringSpan is a running span of the ring tracer: its attributes are
// encoded into a buffer as they are set, and at its end the buffer goes to
// the ring as it is, without a copy. Its methods are safe for concurrent
// use; after End it no longer changes.
type ringSpan struct {
	embedded.Span
	p         *ringProvider
	sc        trace.SpanContext
	parent    trace.SpanID
	hasParent bool

	mu         sync.Mutex
	name       string
	kind       trace.SpanKind
	start      time.Time
	data       *[]byte // the attributes so far (spandata.go); the ring's once ended
	extra      *spanExtra
	status     codes.Code
	statusDesc string
	ended      bool
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
	if end.IsZero() {
		end = time.Now()
	}
	h := spanHead{traceID: s.sc.TraceID(), spanID: s.sc.SpanID(), parentID: s.parent, hasParent: s.hasParent,
		isErr: s.status == codes.Error, kind: s.kind, start: s.start.UnixNano(), end: end.UnixNano()}
	data, extra := s.data, s.extra
	h.attrs = len(*data)
	*data = appendName(*data, s.name, s.statusDesc)
	s.data, s.extra = nil, nil
	s.mu.Unlock()
	s.p.ring.keep(&h, data, extra)
}

func (s *ringSpan) AddEvent(name string, opts ...trace.EventOption) {
	cfg := trace.NewEventConfig(opts...)
	ev := Event{Name: name, Time: cfg.Timestamp(), Attributes: attrMap(cfg.Attributes())}
	s.mu.Lock()
	if !s.ended {
		if s.extra == nil {
			s.extra = &spanExtra{}
		}
		s.extra.events = append(s.extra.events, ev)
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
		*s.data = appendAttrs(*s.data, kv, &s.extra)
	}
	s.mu.Unlock()
}

func (s *ringSpan) TracerProvider() trace.TracerProvider { return s.p }
