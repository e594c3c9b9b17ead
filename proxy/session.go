package proxy

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// session is one agent session (protocol versions before 2026-07-28): the
// proxy's own id toward the agent, the gateway's id toward the gateway.
type session struct {
	id      string
	subject string // hash of the credential that created it; "" when none
	// authorization is the agent's Authorization header, kept only when
	// it is forwarded to the gateway (upstream.agentCredential), for the
	// requests the proxy sends on the session's behalf with no agent
	// request to take it from: an expired or shut-down session's DELETE,
	// a cancellation, a legacy session's gateway stream. Set at creation
	// and never changed: lookup admits only requests whose Authorization
	// hashes to subject, so every later request of the session carries
	// this very value, and the agent's latest is always this one. A
	// refreshed token is a new credential, hence a new session.
	authorization   credential
	protocolVersion string
	created         time.Time
	legacy          *legacyStream // non-nil for the HTTP+SSE (2024-11-05) transport

	mu         sync.Mutex
	upstreamID string
	initParams json.RawMessage // replayed when the gateway loses the session
	ready      bool            // the gateway answered initialize
	lastSeen   time.Time
	// pending holds the ids of server→client requests relayed to the agent
	// and not yet answered: a response with any other id is dropped.
	pending map[string]struct{}
	// calls maps the ids of agent requests forwarded to the gateway to their
	// methods until answered, across streams: an answer may arrive on a
	// resumed GET stream after the POST's stream was cut (SEP-1699).
	calls  map[string]string
	active int // requests in flight; an active session never expires
}

// elicits reports whether the agent declared elicitation at initialize.
func (s *session) elicits() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return declaresElicitation(s.initParams)
}

func (s *session) upstream() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.upstreamID
}

func (s *session) begin() {
	s.mu.Lock()
	s.active++
	s.mu.Unlock()
}

func (s *session) end(now time.Time) {
	s.mu.Lock()
	s.active--
	idle := s.active == 0
	s.lastSeen = now
	s.mu.Unlock()
	if idle && s.legacy != nil {
		select {
		case s.legacy.idle <- struct{}{}:
		default: // already signalled
		}
	}
}

// busy reports whether the session has requests in flight.
func (s *session) busy() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.active > 0
}

// maxPendingServerRequests bounds the server→client requests of one session
// relayed to the agent and not yet answered: a gateway flooding requests the
// agent never answers must not grow the session without limit. Beyond it the
// proxy refuses them to the gateway itself (exchange.fromUpstream).
const maxPendingServerRequests = 4096

// expect records a server→client request relayed to the agent. It reports
// false, recording nothing, when the session already has
// maxPendingServerRequests unanswered.
func (s *session) expect(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending == nil {
		s.pending = make(map[string]struct{})
	}
	if len(s.pending) >= maxPendingServerRequests {
		return false
	}
	s.pending[id] = struct{}{}
	return true
}

// answer reports whether id is an outstanding server→client request, and
// forgets it: each request is answered once.
func (s *session) answer(id string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[id]; !ok {
		return false
	}
	delete(s.pending, id)
	return true
}

// maxTrackedCalls bounds the forwarded requests a session remembers for
// answers on a resumed stream; past it they are answered on their own
// stream only.
const maxTrackedCalls = 4096

// track records a forwarded agent request.
func (s *session) track(id, method string) {
	s.mu.Lock()
	if s.calls == nil {
		s.calls = make(map[string]string)
	}
	if len(s.calls) < maxTrackedCalls {
		s.calls[id] = method
	}
	s.mu.Unlock()
}

// settle forgets a forwarded request once it is answered, returning its
// method; false when it was never forwarded or is already answered.
func (s *session) settle(id string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m, ok := s.calls[id]
	delete(s.calls, id)
	return m, ok
}

// sessions is the proxy's session table.
type sessions struct {
	mu   sync.Mutex
	byID map[string]*session
	max  int
	idle time.Duration
	now  func() time.Time
}

func newSessions(max int, idle time.Duration) *sessions {
	return &sessions{byID: make(map[string]*session), max: max, idle: idle, now: time.Now}
}

// newSessionID returns 256 random bits: unguessable, so knowing one session
// tells nothing of another.
func newSessionID() string {
	var b [32]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand, Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// subjectOf identifies the caller by its credential without keeping it: the
// hash of the Authorization header. No header, no identity to bind.
func subjectOf(r *http.Request) string {
	a := header(r.Header, "Authorization")
	if a == "" {
		return ""
	}
	sum := sha256.Sum256([]byte(a))
	return hex.EncodeToString(sum[:16])
}

// credential is an agent's Authorization header value, kept by its session
// (session.authorization); the zero value is none. Printed by mistake, it
// shows no secret: String, GoString and slog's LogValue redact it, and
// behind a pointer it is an address to fmt's %v of a struct that holds it
// and an empty object to encoding/json. Only value reveals it, to put it
// in a request.
type credential struct{ v *string }

func newCredential(v string) credential {
	if v == "" {
		return credential{}
	}
	return credential{&v}
}

// value returns the credential; "" when none.
func (c credential) value() string {
	if c.v == nil {
		return ""
	}
	return *c.v
}

func (credential) String() string       { return "[redacted]" }
func (credential) GoString() string     { return "[redacted]" }
func (credential) LogValue() slog.Value { return slog.StringValue("[redacted]") }

// create registers a new session, or reports false when the table is full.
func (t *sessions) create(subject string, auth credential, version string, legacy *legacyStream) (*session, bool) {
	now := t.now()
	s := &session{id: newSessionID(), subject: subject, authorization: auth, protocolVersion: version,
		created: now, lastSeen: now, legacy: legacy}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.byID) >= t.max {
		return nil, false
	}
	t.byID[s.id] = s
	return s, true
}

// lookup returns the live session with id, checking it belongs to subject.
func (t *sessions) lookup(id, subject string) (*session, *callError) {
	t.mu.Lock()
	s, ok := t.byID[id]
	t.mu.Unlock()
	if !ok {
		return nil, errSessionNotFound(id)
	}
	s.mu.Lock()
	expired := s.active == 0 && t.now().Sub(s.lastSeen) > t.idle
	s.mu.Unlock()
	if expired {
		return nil, errSessionNotFound(id)
	}
	// A session created with a credential answers only to that credential
	// (go-sdk does the same): a leaked session id alone is not enough.
	if subtle.ConstantTimeCompare([]byte(s.subject), []byte(subject)) != 1 {
		return nil, errSessionOwner()
	}
	return s, nil
}

// lookupOn is lookup for a request of one transport: a session id is bound
// to the transport that issued it (the legacy HTTP+SSE endpoint's, or
// Streamable HTTP's), and named on the other it is not found. Accepted
// there, a legacy session could be driven without the stream its answers
// need, before any initialize of that transport (issue #14).
func (t *sessions) lookupOn(id, subject string, legacy bool) (*session, *callError) {
	s, cerr := t.lookup(id, subject)
	if cerr == nil && (s.legacy != nil) != legacy {
		return nil, errSessionNotFound(id)
	}
	return s, cerr
}

// remove deletes a session and reports whether it was there.
func (t *sessions) remove(id string) (*session, bool) {
	t.mu.Lock()
	s, ok := t.byID[id]
	delete(t.byID, id)
	t.mu.Unlock()
	return s, ok
}

// removeAll removes and returns every session.
func (t *sessions) removeAll() []*session {
	return t.removeIf(func(*session) bool { return true })
}

// expire removes and returns sessions idle for longer than the timeout.
func (t *sessions) expire() []*session {
	now := t.now()
	return t.removeIf(func(s *session) bool { return s.active == 0 && now.Sub(s.lastSeen) > t.idle })
}

// removeIf removes and returns the sessions for which drop (called with
// the session's lock held) is true.
func (t *sessions) removeIf(drop func(*session) bool) []*session {
	var out []*session
	t.mu.Lock()
	defer t.mu.Unlock()
	for id, s := range t.byID {
		s.mu.Lock()
		gone := drop(s)
		s.mu.Unlock()
		if gone {
			delete(t.byID, id)
			out = append(out, s)
		}
	}
	return out
}

func (t *sessions) count() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.byID)
}
