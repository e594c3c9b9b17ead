package proxy

import (
	"context"
	"net/http"
	"strconv"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	semconv "go.opentelemetry.io/otel/semconv/v1.41.0"
	"go.opentelemetry.io/otel/trace"
)

// The client span of a gateway call the agent makes outside any exchange:
// its standalone GET stream, and its DELETE. Neither carries an MCP
// message, so neither has a server span (observecalls.go): the client
// span's parent is the trace context of the agent's headers, and the
// gateway receives the client span's in its headers (traceHeaders), as it
// does a POST's. The DELETE the proxy sends on its own (an expired
// session's, at shutdown) gets such a span too (ownSessionCall), a root
// one: no request of the agent's is behind it.

// sessionSpan is such a call's client span. Its methods allow nil: no span
// (tracing off).
type sessionSpan struct{ span trace.Span }

// sessionCall opens the client span of the agent's request r to the
// gateway for session s, named by its HTTP method as an HTTP client span
// without a URL template is ("GET", "DELETE"), and returns the context to
// call the gateway in.
func (t *telemetry) sessionCall(ctx context.Context, r *http.Request, s *session) (context.Context, *sessionSpan) {
	parent := ctx
	if t.prop != nil && hasTraceHeaders(r.Header) {
		parent = t.prop.Extract(ctx, propagation.HeaderCarrier(r.Header))
	}
	attrs := make([]attribute.KeyValue, 0, 4+len(t.upAttrs))
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(r.Method), semconv.McpSessionID(s.id))
	if s.protocolVersion != "" {
		attrs = append(attrs, semconv.McpProtocolVersion(s.protocolVersion))
	}
	attrs = append(attrs, t.upAttrs...)
	ctx, span := t.start(parent, r.Method, trace.SpanKindClient, time.Now(), attrs, nil)
	return ctx, &sessionSpan{span}
}

// ownSessionCall opens the client span of a request the proxy sends the
// gateway on its own for session s, to end it for why: a root span named
// by its HTTP method, with the attributes of sessionCall's and why
// (attrSessionClose). A surplus gateway session (closeUpstream) is named
// by its fingerprint (attrUpstreamSession), and has mcp.session.id only
// when a proxy session opened it.
func (t *telemetry) ownSessionCall(ctx context.Context, method string, s *session, why closeReason) (context.Context, *sessionSpan) {
	attrs := make([]attribute.KeyValue, 0, 5+len(t.upAttrs))
	attrs = append(attrs, semconv.HTTPRequestMethodKey.String(method), attrSessionClose.String(string(why)))
	if s.id != "" {
		attrs = append(attrs, semconv.McpSessionID(s.id))
	}
	if why == closedSurplus {
		attrs = append(attrs, attrUpstreamSession.String(upstreamSessionHash(s.upstream())))
	}
	if s.protocolVersion != "" {
		attrs = append(attrs, semconv.McpProtocolVersion(s.protocolVersion))
	}
	attrs = append(attrs, t.upAttrs...)
	ctx, span := t.start(ctx, method, trace.SpanKindClient, time.Now(), attrs, nil)
	return ctx, &sessionSpan{span}
}

// answered notes the gateway's answer, or cerr when there is none, as a
// POST's client span does (calls.gatewayAnswered): a 4xx or 5xx answer is
// an error of the call. A gateway without a standalone stream answers a
// GET 405, which the span shows as such.
func (s *sessionSpan) answered(res *http.Response, cerr *callError) {
	if s == nil {
		return
	}
	switch {
	case cerr != nil:
		s.span.SetAttributes(semconv.ErrorTypeKey.String(upstreamErrorType(cerr)))
		s.span.SetStatus(codes.Error, cerr.msg)
	case res.StatusCode >= 400:
		s.span.SetAttributes(semconv.HTTPResponseStatusCode(res.StatusCode), semconv.ErrorTypeKey.String(strconv.Itoa(res.StatusCode)))
		s.span.SetStatus(codes.Error, res.Status)
	default:
		s.span.SetAttributes(semconv.HTTPResponseStatusCode(res.StatusCode))
	}
}

// refused notes a gateway's 4xx or 5xx answer as answered does, with a
// status description that says what it means and what to do (next).
func (s *sessionSpan) refused(res *http.Response, next string) {
	if s == nil {
		return
	}
	s.span.SetAttributes(semconv.HTTPResponseStatusCode(res.StatusCode), semconv.ErrorTypeKey.String(strconv.Itoa(res.StatusCode)))
	s.span.SetStatus(codes.Error, "gateway answered "+res.Status+": "+next)
}

// end ends the span: a DELETE's once answered, a GET's when the relay of
// the gateway's stream has ended.
func (s *sessionSpan) end() {
	if s != nil {
		endSpan(s.span, time.Now())
	}
}
