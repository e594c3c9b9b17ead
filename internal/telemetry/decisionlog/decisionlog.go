// Package decisionlog writes and reads mcpguard's decision log: one JSON
// object per line for every policy decision the proxy makes. It is the input
// of `mcpguard policy replay`, so a line carries the same fields, under the
// same names, as the rules.Input the decision was made on (method, tool,
// server, session, protocolVersion, identity, arguments), followed by the
// outcome. Argument values are present only when the operator opted in, and
// then in redacted form.
package decisionlog

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"sync"
	"time"

	"mcpguard.dev/mcpguard/rules"
)

// Record is one decision. Field names follow rules.Input's JSON names so a
// line decodes into a rules.Input as it stands.
type Record struct {
	// Time is when the decision was made (RFC 3339, UTC, nanoseconds).
	Time time.Time `json:"time"`
	// Method, Tool, Server, Session, ProtocolVersion and Identity are the
	// rules.Input fields of the same JSON names.
	Method          string         `json:"method"`
	Tool            string         `json:"tool,omitempty"`
	Server          string         `json:"server,omitempty"`
	Session         string         `json:"session,omitempty"`
	ProtocolVersion string         `json:"protocolVersion,omitempty"`
	Identity        rules.Identity `json:"identity,omitzero"`
	// Arguments is set only with --record-arguments, after redaction: a
	// replay of a line without it decides as if the call had no arguments.
	Arguments json.RawMessage `json:"arguments,omitempty"`

	// Decision is "allow" or "deny" (rules.Decision.Allow).
	Decision string `json:"decision"`
	// Rule, Reason and Mode are the rules.Decision fields.
	Rule   string `json:"rule"`
	Reason string `json:"reason,omitempty"`
	Mode   string `json:"mode,omitempty"`
	// Blocked reports whether the proxy stopped the call (a denial in
	// enforce mode); a monitor-mode denial is logged with Blocked false.
	Blocked bool `json:"blocked"`
	// TraceID and SpanID locate the call's trace (W3C hex); empty when
	// tracing is off and the agent sent no trace context.
	TraceID string `json:"traceId,omitempty"`
	SpanID  string `json:"spanId,omitempty"`
	// DurationUS is how long the policy took, in microseconds.
	DurationUS int64 `json:"durationUs"`
}

// Input returns the rules.Input the decision was made on, as far as the log
// kept it (no tool definition; arguments only when recorded).
func (r *Record) Input() rules.Input {
	return rules.Input{Method: r.Method, Tool: r.Tool, Server: r.Server, Arguments: r.Arguments,
		Session: r.Session, ProtocolVersion: r.ProtocolVersion, Identity: r.Identity}
}

// Outcome returns the logged outcome as a rules.Decision.
func (r *Record) Outcome() rules.Decision {
	return rules.Decision{Allow: r.Decision == "allow", Rule: r.Rule, Reason: r.Reason, Mode: rules.Mode(r.Mode)}
}

// Writer appends records to an io.Writer, one line each. It is safe for
// concurrent use; each record reaches the underlying writer in a single
// Write call, so lines from concurrent calls never interleave. A nil
// *Writer discards records.
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	closer io.Closer
	buf    []byte
	err    error // the first write error, reported by Close
}

// NewWriter returns a Writer on w.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w} }

// Open opens path for appending ("-" is standard output) and returns a
// Writer on it.
func Open(path string) (*Writer, error) {
	if path == "-" {
		return NewWriter(os.Stdout), nil
	}
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("decision log: %w", err)
	}
	return &Writer{w: f, closer: f}, nil
}

// Log writes one record. Errors are kept for Close: a full disk must not
// fail the call being decided.
func (w *Writer) Log(r *Record) {
	if w == nil {
		return
	}
	line, err := json.Marshal(r)
	if err != nil {
		return // every field marshals; an error here is a bug, not a call's fault
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(append(w.buf[:0], line...), '\n')
	if _, err := w.w.Write(w.buf); err != nil && w.err == nil {
		w.err = err
	}
}

// Close closes the underlying file (not standard output) and reports the
// first write error, if any.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	var cerr error
	if w.closer != nil {
		cerr = w.closer.Close()
	}
	return errors.Join(w.err, cerr)
}

// Read yields the records of a decision log in order. A line that is not a
// record yields an error naming its line number; reading goes on after it.
func Read(r io.Reader) iter.Seq2[*Record, error] {
	return func(yield func(*Record, error) bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 0, 64<<10), 16<<20)
		for n := 1; sc.Scan(); n++ {
			line := sc.Bytes()
			if len(line) == 0 {
				continue
			}
			var rec Record
			if err := json.Unmarshal(line, &rec); err != nil {
				if !yield(nil, fmt.Errorf("line %d: %v", n, err)) {
					return
				}
				continue
			}
			if rec.Method == "" || (rec.Decision != "allow" && rec.Decision != "deny") {
				if !yield(nil, fmt.Errorf("line %d: not a decision record (method %q, decision %q)", n, rec.Method, rec.Decision)) {
					return
				}
				continue
			}
			if !yield(&rec, nil) {
				return
			}
		}
		if err := sc.Err(); err != nil {
			yield(nil, err)
		}
	}
}
