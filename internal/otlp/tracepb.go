package otlp

import (
	"math"
	"time"

	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/sdk/instrumentation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Field numbers of opentelemetry/proto/trace/v1/trace.proto and of
// ExportTraceServiceRequest.
const (
	reqResourceSpans = 1

	rsResource   = 1
	rsScopeSpans = 2
	rsSchemaURL  = 3

	ssScope     = 1
	ssSpans     = 2
	ssSchemaURL = 3

	spanTraceID           = 1
	spanSpanID            = 2
	spanTraceState        = 3
	spanParentSpanID      = 4
	spanName              = 5
	spanKind              = 6
	spanStart             = 7
	spanEnd               = 8
	spanAttributes        = 9
	spanDroppedAttributes = 10
	spanEvents            = 11
	spanDroppedEvents     = 12
	spanLinks             = 13
	spanDroppedLinks      = 14
	spanStatus            = 15
	spanFlags             = 16

	eventTime              = 1
	eventName              = 2
	eventAttributes        = 3
	eventDroppedAttributes = 4

	linkTraceID           = 1
	linkSpanID            = 2
	linkTraceState        = 3
	linkAttributes        = 4
	linkDroppedAttributes = 5
	linkFlags             = 6

	statusMessage = 2
	statusCode    = 3

	// SpanFlags: the low byte is the W3C trace flags.
	flagHasIsRemote = 0x100
	flagIsRemote    = 0x200
)

// appendTraces appends spans as an ExportTraceServiceRequest: one
// ResourceSpans per resource and one ScopeSpans per scope within it, in the
// order they first appear, each span where the official exporters put it.
func appendTraces(b buf, spans []sdktrace.ReadOnlySpan) buf {
	type group struct {
		res    *resource.Resource
		scopes []instrumentation.Scope
		spans  [][]sdktrace.ReadOnlySpan
	}
	var groups []group
	find := func(res *resource.Resource, sc instrumentation.Scope) *[]sdktrace.ReadOnlySpan {
		gi := -1
		for i := range groups {
			if groups[i].res == res || groups[i].res.Equivalent() == res.Equivalent() {
				gi = i
				break
			}
		}
		if gi < 0 {
			groups = append(groups, group{res: res})
			gi = len(groups) - 1
		}
		g := &groups[gi]
		for i := range g.scopes {
			if g.scopes[i] == sc {
				return &g.spans[i]
			}
		}
		g.scopes = append(g.scopes, sc)
		g.spans = append(g.spans, nil)
		return &g.spans[len(g.spans)-1]
	}
	for _, s := range spans {
		if s == nil {
			continue
		}
		l := find(s.Resource(), s.InstrumentationScope())
		*l = append(*l, s)
	}

	for _, g := range groups {
		rs := b.open(reqResourceSpans)
		if g.res != nil {
			r := b.open(rsResource)
			b.set(resourceAttributes, g.res.Set())
			b.close(r)
		}
		for i, sc := range g.scopes {
			ss := b.open(rsScopeSpans)
			if sc != (instrumentation.Scope{}) {
				b.scope(ssScope, sc.Name, sc.Version, &sc.Attributes)
			}
			for _, s := range g.spans[i] {
				b.span(s)
			}
			b.str(ssSchemaURL, sc.SchemaURL)
			b.close(ss)
		}
		if g.res != nil {
			b.str(rsSchemaURL, g.res.SchemaURL())
		}
		b.close(rs)
	}
	return b
}

func (b *buf) span(s sdktrace.ReadOnlySpan) {
	m := b.open(ssSpans)
	sc := s.SpanContext()
	tid, sid := sc.TraceID(), sc.SpanID()
	b.bytes(spanTraceID, tid[:])
	b.bytes(spanSpanID, sid[:])
	b.str(spanTraceState, sc.TraceState().String())
	parent := s.Parent()
	if psid := parent.SpanID(); psid.IsValid() {
		b.bytes(spanParentSpanID, psid[:])
	}
	b.str(spanName, s.Name())
	b.uvarint(spanKind, uint64(kind(s.SpanKind())))
	b.fixed64(spanStart, unixNano(s.StartTime()))
	b.fixed64(spanEnd, unixNano(s.EndTime()))
	b.keyValues(spanAttributes, s.Attributes())
	b.uvarint(spanDroppedAttributes, clamp(s.DroppedAttributes()))
	for _, e := range s.Events() {
		ev := b.open(spanEvents)
		b.fixed64(eventTime, unixNano(e.Time))
		b.str(eventName, e.Name)
		b.keyValues(eventAttributes, e.Attributes)
		b.uvarint(eventDroppedAttributes, clamp(e.DroppedAttributeCount))
		b.close(ev)
	}
	b.uvarint(spanDroppedEvents, clamp(s.DroppedEvents()))
	for _, l := range s.Links() {
		lk := b.open(spanLinks)
		ltid, lsid := l.SpanContext.TraceID(), l.SpanContext.SpanID()
		b.bytes(linkTraceID, ltid[:])
		b.bytes(linkSpanID, lsid[:])
		b.str(linkTraceState, l.SpanContext.TraceState().String())
		b.keyValues(linkAttributes, l.Attributes)
		b.uvarint(linkDroppedAttributes, clamp(l.DroppedAttributeCount))
		b.fixed32(linkFlags, flags(l.SpanContext.TraceFlags(), l.SpanContext))
		b.close(lk)
	}
	b.uvarint(spanDroppedLinks, clamp(s.DroppedLinks()))
	st := b.open(spanStatus)
	status := s.Status()
	b.str(statusMessage, status.Description)
	switch status.Code {
	case codes.Ok:
		b.uvarint(statusCode, 1)
	case codes.Error:
		b.uvarint(statusCode, 2)
	}
	b.close(st)
	b.fixed32(spanFlags, flags(sc.TraceFlags(), parent))
	b.close(m)
}

// flags is a span's or link's SpanFlags: the W3C flags, and whether the
// parent (for a link, the linked context) is remote.
func flags(tf trace.TraceFlags, parent trace.SpanContext) uint32 {
	f := uint32(tf) | flagHasIsRemote
	if parent.IsRemote() {
		f |= flagIsRemote
	}
	return f
}

// kind maps the API's span kind to Span.SpanKind: the same numbers, and
// anything unknown is unspecified.
func kind(k trace.SpanKind) int {
	switch k {
	case trace.SpanKindInternal, trace.SpanKindServer, trace.SpanKindClient, trace.SpanKindProducer, trace.SpanKindConsumer:
		return int(k)
	}
	return 0
}

func unixNano(t time.Time) uint64 { return uint64(max(0, t.UnixNano())) }

func clamp(n int) uint64 { return uint64(min(max(n, 0), math.MaxUint32)) }
