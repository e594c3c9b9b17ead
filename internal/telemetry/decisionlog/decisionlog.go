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
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"iter"
	"os"
	"sync"
	"time"

	"mcpguard.dev/mcpguard/internal/linebuf"
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
	// DurationUS is how long the policy took, in microseconds (for an
	// approval, how long the person took).
	DurationUS int64 `json:"durationUs"`
	// Approval, on the record of a call a rule's action "confirm" held,
	// is how it ended: "confirmed", "declined", "timeout", "cancelled"
	// (the call ended first) or "unavailable" (no one could be asked).
	// The record of the decision that held it says Decision "confirm".
	Approval string `json:"approval,omitempty"`
	// ApprovedBy says who was asked: "elicitation" (the agent's user,
	// through MCP elicitation) or "queue" (`mcpguard approve|deny`).
	ApprovedBy string `json:"approvedBy,omitempty"`

	// Seq numbers the records of a chain from 1; it carries on across
	// restarts (appending to the same file) and rotations (Reopen).
	Seq uint64 `json:"seq"`
	// Prev is the digest of the previous record's line ("sha256:" and the
	// hex SHA-256 of its bytes, without the newline), or Genesis for the
	// first record of a chain. Set by the Writer; see Verify.
	Prev string `json:"prev"`
}

// Genesis is the Prev of the first record of a chain.
const Genesis = "sha256:0000000000000000000000000000000000000000000000000000000000000000"

// Digest returns the digest a record's successor carries as Prev: of the
// record's line, without its newline.
func Digest(line []byte) string {
	sum := sha256.Sum256(line)
	return "sha256:" + hex.EncodeToString(sum[:])
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

// FlushInterval is how long a record logged by a Writer from Open may wait
// before it reaches the file.
const FlushInterval = 100 * time.Millisecond

// Writer appends records to an io.Writer, one line each. It is safe for
// concurrent use; lines from concurrent calls never interleave. A Writer
// from Open batches its lines (one write per batch, not per call, issue
// #18): each is in the file at most FlushInterval after it was logged, and
// every one by Close or Reopen. A nil *Writer discards records.
//
// The records form a hash chain: each carries its sequence number and the
// digest of the line before it, so `mcpguard audit verify` finds the first
// record edited, inserted, deleted or cut short. The chain continues where
// the file left off when the proxy restarts, and into the next file when
// the log is rotated (Reopen).
type Writer struct {
	mu     sync.Mutex
	w      io.Writer
	batch  *linebuf.Writer // w, when Open batches; nil when written through
	closer io.Closer
	path   string
	buf    []byte
	err    error // the first write error, reported by Close
	seq    uint64
	prev   string
}

// NewWriter returns a Writer on w, starting a new chain. Each record is
// written through, in a single Write call.
func NewWriter(w io.Writer) *Writer { return &Writer{w: w, prev: Genesis} }

// Open opens path for appending ("-" is standard output) and returns a
// Writer on it. When the file already holds records, the chain continues
// from its last complete line.
func Open(path string) (*Writer, error) {
	if path == "-" {
		w := NewWriter(os.Stdout)
		w.batch = linebuf.New(os.Stdout, FlushInterval)
		w.w = w.batch
		return w, nil
	}
	w := &Writer{path: path, prev: Genesis}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// open opens w.path and picks the chain up from its last record, if any.
func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("decision log: %w", err)
	}
	last, partial, err := lastLine(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("decision log: %w", err)
	}
	if last != nil {
		var r struct {
			Seq uint64 `json:"seq"`
		}
		if json.Unmarshal(last, &r) == nil {
			w.seq, w.prev = r.Seq, Digest(last)
		}
	}
	if partial {
		// A line cut short (a crash mid-write) stays for verify to report;
		// the next record starts on a line of its own.
		if _, err := f.Write([]byte("\n")); err != nil {
			f.Close()
			return fmt.Errorf("decision log: %w", err)
		}
	}
	w.batch = linebuf.New(f, FlushInterval)
	w.w, w.closer = w.batch, f
	return nil
}

// lastLine returns the last complete line of f (nil when there is none),
// and whether f ends in a partial line.
func lastLine(f *os.File) ([]byte, bool, error) {
	st, err := f.Stat()
	if err != nil || st.Size() == 0 {
		return nil, false, err
	}
	const window = 16 << 20 // a record is far smaller
	off := max(0, st.Size()-window)
	buf := make([]byte, st.Size()-off)
	if _, err := f.ReadAt(buf, off); err != nil && err != io.EOF {
		return nil, false, err
	}
	partial := buf[len(buf)-1] != '\n'
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[:i]
	} else {
		return nil, partial, nil
	}
	if i := bytes.LastIndexByte(buf, '\n'); i >= 0 {
		buf = buf[i+1:]
	}
	return buf, partial, nil
}

// Reopen closes the file and opens its path again, for rotation: after the
// old file was renamed away, records go to a new file at the path, and the
// chain carries over (the new file's first record has the old file's last
// digest as Prev). A file still at the path is appended to.
func (w *Writer) Reopen() error {
	if w == nil || w.path == "" {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flush()
	if w.closer != nil {
		w.closer.Close()
	}
	seq, prev := w.seq, w.prev
	if err := w.open(); err != nil {
		w.w, w.batch, w.closer = io.Discard, nil, nil
		if w.err == nil {
			w.err = err
		}
		return err
	}
	if w.seq == 0 { // a new, empty file: the chain carries over
		w.seq, w.prev = seq, prev
	}
	return nil
}

// Log writes one record. Errors are kept for Close: a full disk must not
// fail the call being decided.
func (w *Writer) Log(r *Record) {
	if w == nil {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	// The chain is linked under the lock, in the order lines are written.
	rec := *r
	rec.Seq, rec.Prev = w.seq+1, w.prev
	line, err := json.Marshal(&rec)
	if err != nil {
		return // every field marshals; an error here is a bug, not a call's fault
	}
	w.seq, w.prev = rec.Seq, Digest(line)
	w.buf = append(append(w.buf[:0], line...), '\n')
	if _, err := w.w.Write(w.buf); err != nil && w.err == nil {
		w.err = err
	}
}

// flush writes what is batched and keeps the first error. w.mu is held.
func (w *Writer) flush() {
	if err := w.batch.Close(); err != nil && w.err == nil {
		w.err = err
	}
}

// Close writes what is batched, closes the underlying file (not standard
// output) and reports the first write error, if any.
func (w *Writer) Close() error {
	if w == nil {
		return nil
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flush()
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
