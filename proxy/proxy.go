package proxy

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Proxy terminates agents' MCP sessions and forwards what the policy allows
// to the gateway. It is an http.Handler; create it with New.
type Proxy struct {
	*pump    // the screening every transport shares (pump.go)
	up       *upstream
	sessions *sessions

	// The drain (shutdown.go). draining is set when Shutdown begins.
	draining atomic.Bool
	// abandoning is set when the drain has timed out: the calls still in
	// flight are given up, and cancelled at the gateway
	// (exchange.cancelGivenUp).
	abandoning atomic.Bool
	// telling counts what the proxy is sending the gateway on its own
	// behalf (answerUpstream): refusals and cancellations. Not a WaitGroup:
	// a stream relay may start a send while Shutdown waits, which a
	// WaitGroup forbids.
	telling counter
	// calls counts the requests being served other than streams, and the
	// legacy transport's work behind its 202s; openStreams counts the
	// streams: GET (Streamable HTTP and legacy) and subscriptions/listen.
	calls       counter
	openStreams counter
	// booksDue counts the exchanges whose agent is answered and whose
	// books (books.go) are not yet kept; calls counts them too, since the
	// books are kept before the handler returns.
	booksDue counter
	// streams is cancelled by Shutdown once no call is in flight:
	// long-lived GET and legacy SSE streams end so a graceful shutdown is
	// not held open by them.
	streams      context.Context
	cancelStream context.CancelFunc
	// servers are those HTTPServer returned, closed by Shutdown.
	srvMu   sync.Mutex
	servers []*http.Server
}

var _ http.Handler = (*Proxy)(nil)

// New validates cfg and returns a ready proxy.
func New(cfg Config) (*Proxy, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	up, err := newUpstream(&cfg)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	sess := newSessions(cfg.MaxSessions, cfg.SessionIdleTimeout)
	p := &Proxy{
		pump:         newPump(cfg, sess.count),
		up:           up,
		sessions:     sess,
		streams:      ctx,
		cancelStream: cancel,
	}
	p.up.inject, p.up.traceKeys = p.obs.traceHeaders, p.obs.traceKeys
	return p, nil
}

// HTTPServer returns the http.Server to serve the proxy with: its timeouts
// and limits are the proxy's defence against agents that misbehave (idle
// connections, slowloris headers, huge headers), so they live here, with the
// handler they protect, and are tested with it (faults_test.go).
//
// Connections are not counted or capped: a cap cannot tell a slow agent from
// an attacker and so lets a few idle connections lock everyone out, while
// ReadHeaderTimeout already reclaims every connection that does not send a
// request. An idle connection costs a goroutine and its buffers (about
// 15 KiB, measured by TestFaultIdleConnections) until then.
//
// Proxy.Shutdown closes it once the calls in flight are done: serve it and
// call Shutdown, not the server's own Shutdown or Close.
func (p *Proxy) HTTPServer() *http.Server {
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: p.cfg.ReadHeaderTimeout,
		IdleTimeout:       p.cfg.IdleTimeout,
		MaxHeaderBytes:    p.cfg.MaxHeaderBytes,
		// net/http's own complaints (a panic, an accept error) go to the
		// proxy's log rather than to stderr unstructured.
		ErrorLog: slog.NewLogLogger(p.log.Handler(), slog.LevelWarn),
	}
	p.srvMu.Lock()
	p.servers = append(p.servers, srv)
	p.srvMu.Unlock()
	return srv
}

// Run expires idle sessions until ctx ends. Expired sessions are deleted
// upstream too, so the gateway does not keep them for its full lifetime.
func (p *Proxy) Run(ctx context.Context) {
	tick := time.NewTicker(min(p.cfg.SessionIdleTimeout/4, time.Minute))
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			for _, s := range p.sessions.expire() {
				p.log.Info("session expired", "session", s.id, "idle", p.cfg.SessionIdleTimeout.String())
				p.sessionEnded(s)
				p.closeSession(s, nil, closedExpired)
			}
		}
	}
}

// Ready reports whether the proxy accepts requests.
func (p *Proxy) Ready() bool { return !p.draining.Load() }

// Sessions returns the number of live sessions.
func (p *Proxy) Sessions() int { return p.sessions.count() }

// closeReason says why a session ends at the gateway: on the log line of a
// DELETE the gateway refuses, and on the span of one the proxy sends on
// its own (attrSessionClose).
type closeReason string

const (
	closedByAgent      closeReason = "agent"    // the agent's DELETE
	closedExpired      closeReason = "expired"  // idle past SessionIdleTimeout (Run)
	closedShutdown     closeReason = "shutdown" // Shutdown's closeSessions
	closedLegacyStream closeReason = "legacy_stream_closed"
	// closedSurplus: a gateway session the proxy cannot use (closeUpstream).
	closedSurplus closeReason = "surplus"
)

// closeSession ends a session at the gateway (best effort, bounded). r is
// the agent's DELETE that asked for it, nil when the proxy ends the
// session itself (expiry, a duplicate, a legacy stream's end).
func (p *Proxy) closeSession(s *session, r *http.Request, why closeReason) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	p.closeSessionCtx(ctx, s, r, why)
}

// closeSessionCtx ends a session, at the gateway within ctx; it reports
// whether the gateway was asked to. The agent's DELETE, r when not nil,
// lends the gateway's its allowlisted headers and, traced, a client span
// (sessionspan.go) whose trace context goes in their place. Without one,
// the gateway's DELETE carries the session's credential
// (session.authorization) and, traced, a client span of its own.
func (p *Proxy) closeSessionCtx(ctx context.Context, s *session, r *http.Request, why closeReason) bool {
	if s.legacy != nil {
		s.legacy.close()
	}
	up := s.upstream()
	if up == "" {
		return false
	}
	ctx, span := p.sessionCall(ctx, r, s)
	if r == nil && p.obs.ownSessionCall != nil {
		ctx, span = p.obs.ownSessionCall(ctx, http.MethodDelete, s, why)
	}
	defer span.end()
	resp, err := p.up.do(ctx, upstreamCall{method: http.MethodDelete, sessionID: up, protocolVersion: s.protocolVersion,
		from: r, authorization: s.authorization})
	if err != nil {
		span.answered(nil, p.upstreamError(err))
		p.log.Warn("deleting the upstream session failed", append(sessionAttrs(s, why), "err", err)...)
		return true
	}
	discard(resp.Body)
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		span.answered(resp, nil)
		return true
	}
	// Anything else leaves the session open, a redirect (3xx) included:
	// the proxy follows none.
	sent := p.up.authorizationSent(r, s.authorization)
	next := deleteRefusedNext(resp.StatusCode, sent, p.up.forwardAuth, r != nil)
	span.refused(resp, next)
	level := slog.LevelWarn
	if resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusMethodNotAllowed {
		level = slog.LevelInfo // nothing is left open, or nothing can be done
	}
	p.log.Log(ctx, level, "the gateway refused to end the session", append(sessionAttrs(s, why),
		"status", resp.StatusCode, "authorization", string(sent), "next", next)...)
	return true
}

// sessionAttrs names the session a DELETE ends, on its log lines: the
// proxy's session id when there is one, and for a surplus gateway session
// (closeUpstream), which the proxy's session does not hold and which may
// have no proxy session at all, the gateway's session id's fingerprint
// (upstreamSessionHash): never the id itself, a signed token.
func sessionAttrs(s *session, why closeReason) []any {
	attrs := make([]any, 0, 6)
	if s.id != "" {
		attrs = append(attrs, "session", s.id)
	}
	if why == closedSurplus {
		attrs = append(attrs, "upstream_session", upstreamSessionHash(s.upstream()))
	}
	return append(attrs, "reason", string(why))
}

// upstreamSessionHash fingerprints a gateway session id for logs and
// spans: "sha256:" and the first 16 hex digits of its SHA-256, which an
// operator can compute from the gateway's own logs (printf %s ID |
// sha256sum) without the proxy showing the id.
func upstreamSessionHash(id string) string {
	sum := sha256.Sum256([]byte(id))
	return "sha256:" + hex.EncodeToString(sum[:8])
}

// deleteRefusedNext says what a gateway's refusal (status, anything but
// 2xx) of a session's DELETE, which carried the credential sent, means and
// what to do about it; forwardAuth is Config.ForwardAuthorization, agents
// whether the DELETE was the agent's own (which carried the credential
// the agent sent with it, not one kept since).
func deleteRefusedNext(status int, sent authSent, forwardAuth, agents bool) string {
	const kept = "the gateway keeps the session until its own idle timeout"
	switch {
	case status == http.StatusNotFound:
		return "the gateway no longer has the session: nothing to do"
	case status == http.StatusMethodNotAllowed:
		return "the gateway does not let clients end sessions (MCP allows a 405 to DELETE) and ends them itself: nothing to do"
	case status >= 300 && status < 400:
		return kept + "; it answered a redirect, which the proxy does not follow: set --upstream to the URL the gateway serves MCP at"
	case status >= 500:
		return kept + "; it failed to end it: see the gateway's logs"
	case status != http.StatusUnauthorized && status != http.StatusForbidden:
		return kept + "; see the gateway's logs for why it refused the DELETE"
	}
	switch sent {
	case authSentToken:
		return kept + "; it refused the token of --upstream-token-file: check that the token is valid for the gateway (audience, expiry)"
	case authSentTransport:
		return kept + "; it refused the credential of the sign-in: sign in again (mcpguard connect --login)"
	case authSentAgent:
		if agents {
			return kept + "; it refused the Authorization the agent sent with this DELETE: see the gateway's logs for why, or give the sidecar a credential of its own with --upstream-token-file"
		}
		return kept + "; it refused the agent's Authorization, sent as the agent last sent it on the session, which may have expired since: give the sidecar a credential of its own with --upstream-token-file"
	case authSentNone:
		if forwardAuth {
			return kept + "; the agent sent no Authorization on the session, so none went with the DELETE: give the sidecar a credential of its own with --upstream-token-file"
		}
	}
	return kept + "; it wants a credential: set --upstream-token-file, or --forward-authorization to pass the agent's own"
}

// sessionCall opens the client span of the agent's request r (a
// standalone GET stream, a DELETE) to the gateway for session s, when
// tracing is on and there is such a request; the span is nil otherwise.
func (p *Proxy) sessionCall(ctx context.Context, r *http.Request, s *session) (context.Context, *sessionSpan) {
	if p.obs.sessionCall == nil || r == nil {
		return ctx, nil
	}
	return p.obs.sessionCall(ctx, r, s)
}
