// Package linebuf batches log lines into few writes: a Writer keeps what it
// is given and writes it to the underlying writer in one call when the
// oldest line has waited Interval, when the batch passes Limit, on Flush and
// on Close. A proxy logging a line per call at info level would otherwise
// make a write system call per call (issue #18).
//
// Lines are never split: each Write is kept whole, so a writer fed by a
// log/slog handler (one Write per record) emits whole records only.
package linebuf

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"time"
)

// Limit is the size past which a Write flushes the batch at once.
const Limit = 32 << 10

// Writer batches writes to an underlying io.Writer. It is safe for
// concurrent use. After Close it writes through, unbuffered, so a late line
// is not lost.
type Writer struct {
	w        io.Writer
	interval time.Duration

	mu     sync.Mutex
	buf    []byte
	timer  *time.Timer // armed while buf holds something
	closed bool
	err    error // the first write error, reported by Close
}

// New returns a Writer on w that writes a line at most interval after it
// was given.
func New(w io.Writer, interval time.Duration) *Writer {
	return &Writer{w: w, interval: interval}
}

// Write keeps p for the next flush (or writes it through after Close). The
// error is that of a flush this call made, if any.
func (b *Writer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return b.w.Write(p)
	}
	b.buf = append(b.buf, p...)
	return len(p), b.appendedLocked(len(p))
}

// appendedLocked follows n bytes appended to buf: the batch is written at
// once past Limit, else within the interval.
func (b *Writer) appendedLocked(n int) error {
	if len(b.buf) >= Limit {
		return b.flushLocked()
	}
	if b.timer == nil {
		b.timer = time.AfterFunc(b.interval, b.timed)
	} else if len(b.buf) == n {
		b.timer.Reset(b.interval) // the first line of a new batch
	}
	return nil
}

func (b *Writer) timed() {
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.flushLocked()
}

// Flush writes what is buffered now.
func (b *Writer) Flush() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.flushLocked()
}

func (b *Writer) flushLocked() error {
	if len(b.buf) == 0 {
		return nil
	}
	_, err := b.w.Write(b.buf)
	if err != nil && b.err == nil {
		b.err = err
	}
	// A batch that grew large is not kept: memory in a quiet process is
	// what the sidecar is measured by.
	if cap(b.buf) > 2*Limit {
		b.buf = nil
	} else {
		b.buf = b.buf[:0]
	}
	return err
}

// Close flushes and stops buffering; later writes go straight through. It
// reports the first write error, if any, and does not close the underlying
// writer.
func (b *Writer) Close() error {
	if b == nil {
		return nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	_ = b.flushLocked()
	b.closed = true
	if b.timer != nil {
		b.timer.Stop()
	}
	return b.err
}

// Handler returns h with records at level or above written at once, with
// every line buffered before them: a warning or an error is not held back,
// and the lines before it keep their order.
func Handler(h slog.Handler, w *Writer, level slog.Level) slog.Handler {
	return &handler{Handler: h, w: w, level: level}
}

type handler struct {
	slog.Handler
	w     *Writer
	level slog.Level
}

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	err := h.Handler.Handle(ctx, r)
	if r.Level >= h.level {
		err = errors.Join(err, h.w.Flush())
	}
	return err
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &handler{Handler: h.Handler.WithAttrs(attrs), w: h.w, level: h.level}
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{Handler: h.Handler.WithGroup(name), w: h.w, level: h.level}
}
