package proxy

import (
	"context"
	"sync"
	"time"

	"mcpguard.dev/mcpguard/rules"
)

// The books of an exchange: what it records about itself — the decision
// log and the decisions' telemetry, the server spans of the agent's
// messages, the client span of the gateway call, and their metrics — kept
// once the agent has its answer, as Envoy writes its access log and ends
// its spans after the response: at one session, all the handler does
// before the answer leaves is latency the agent waits for (issue #18).
// One exception: the decisions of what goes to the gateway are told before
// it is sent, since the decision log is an audit trail written ahead of
// the act; an exchange answered by the proxy alone (a denial, an error)
// tells its decisions after its answer.
// What happened is noted when it happens (a decision when it is made, a
// span's end when its answer is delivered, the gateway call's end when its
// body is read), so times are those of the events, not of the books. A
// span starts when its event does, for its id and time; through the ring
// tracer its name and attributes are set with the books (calls.describe).
//
// Over Streamable HTTP a JSON answer is written and flushed (httpOut), and
// the books are kept before the handler returns: Proxy.Shutdown, which
// waits for every handler, waits for them too, and a decision log flushed
// after it holds every decision. An answer on an event stream (the agent's
// SSE, the legacy transport) is on its way as it is delivered; the books
// are kept when the exchange ends, after the stream. A GET stream and
// stdio keep none: they record as things happen.

// books holds an exchange's decisions until its answer is on its way. It is
// also the exchange's context (exchange.run decides and forwards under it),
// which is how a decision made under it finds it (pump.decided). Used by
// the exchange's goroutine alone; its zero value is unused.
type books struct {
	context.Context
	// decisions are noted in a list from notePool, taken at the first.
	decisions *[]decisionNote
	// owed: the agent is being answered, and Proxy.booksDue counts this
	// exchange until its books are kept.
	owed bool
	kept bool
}

// decisionNote is one decision as the observer records it
// (observer.recordDecision), or the end of a held call's approval when
// outcome is set.
type decisionNote struct {
	ctx          context.Context
	in           rules.Input
	d            rules.Decision
	took         time.Duration
	at           time.Time
	outcome, via string
	logged       bool // its decision log line is written (tellLog)
}

// booksKey is the context key under which a books answers for itself.
type booksKey struct{}

func (b *books) Value(key any) any {
	if key == (booksKey{}) {
		return b
	}
	return b.Context.Value(key)
}

// open makes b the books of an exchange run under ctx, and returns b as
// the context to run it in.
func (b *books) open(ctx context.Context) context.Context {
	b.Context = ctx
	return b
}

// notePool holds the lists decisions are noted in: a decision is some 400
// bytes (its rules.Input), which a list held in every exchange would add
// to each one's allocation, calls and notifications alike.
var notePool = sync.Pool{New: func() any { s := make([]decisionNote, 0, 2); return &s }}

// maxPooledNotes bounds the lists kept: a tools/list of thousands of tools
// must not pin its notes in the pool.
const maxPooledNotes = 64

// note keeps a decision (outcome "") or an approval's end for later, in
// the order they happen; false when the books are kept already, and it is
// to be recorded now.
func (b *books) note(n *decisionNote) bool {
	if b.kept {
		return false
	}
	if b.decisions == nil {
		b.decisions = notePool.Get().(*[]decisionNote)
	}
	*b.decisions = append(*b.decisions, *n)
	return true
}

// tellLog writes the decision log lines of what is noted so far, and
// leaves the rest of their record (their spans and metrics) to tell: run
// before the exchange forwards anything to the gateway (exchange.run), as
// the decision log is the audit trail of what the gateway was asked to do.
func (b *books) tellLog(obs *observer) {
	if b.decisions == nil {
		return
	}
	for i := range *b.decisions {
		if n := &(*b.decisions)[i]; !n.logged {
			obs.decisions.recordNote(n)
			n.logged = true
		}
	}
}

// tell records what is noted so far, in order, and empties the list: at
// keepBooks, or before the exchange waits for a person (approval.go).
func (b *books) tell(obs *observer) {
	notes := b.decisions
	if notes == nil {
		return
	}
	for i := range *notes {
		obs.recordDecision(&(*notes)[i])
	}
	b.decisions = nil
	if cap(*notes) <= maxPooledNotes {
		clear(*notes) // what they reference: the messages, the contexts
		*notes = (*notes)[:0]
		notePool.Put(notes)
	}
}

// booksOf returns the books ctx runs under, nil when none.
func booksOf(ctx context.Context) *books {
	b, _ := ctx.Value(booksKey{}).(*books)
	return b
}

// owe notes that the agent is about to get its answer (or a part of
// it): from then on the books are owed, and Proxy.booksDue counts them.
func (ex *exchange) owe() {
	if !ex.books.owed && ex.books.Context != nil {
		ex.books.owed = true
		ex.p.booksDue.add(1)
	}
}

// keepBooks records what the exchange did, in order: its decisions (a
// policy span's attributes are copied onto its call's server span, so they
// come first), then its spans and their metrics (calls.ended). It is the
// one place the books of an exchange are kept, run last in exchange.run.
func (ex *exchange) keepBooks() {
	b := &ex.books
	b.kept = true
	b.tell(&ex.p.obs)
	ex.calls.ended(nil)
	if b.owed {
		ex.p.booksDue.add(-1)
	}
}

// WaitRecorded waits until what every exchange whose agent has its answer
// did is recorded — its decisions in the decision log, its spans and its
// metrics, which are recorded after the answer is sent — or ctx ends. A
// caller that has its answer finds its call in the span ring and the
// metrics once this returns (the decision log writer may still batch its
// lines). Shutdown waits for them without it.
func (p *Proxy) WaitRecorded(ctx context.Context) error { return p.booksDue.wait(ctx) }
