package linebuf

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// recorder is the underlying writer: it keeps each Write call apart.
type recorder struct {
	mu     sync.Mutex
	writes []string
	fail   error
}

func (r *recorder) Write(p []byte) (int, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return 0, r.fail
	}
	r.writes = append(r.writes, string(p))
	return len(p), nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.writes...)
}

func TestBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var r recorder
		w := New(&r, 100*time.Millisecond)
		fmt.Fprintln(w, "a")
		time.Sleep(60 * time.Millisecond)
		fmt.Fprintln(w, "b")
		synctest.Wait()
		if got := r.got(); len(got) != 0 {
			t.Fatalf("written before the interval: %q", got)
		}
		time.Sleep(40 * time.Millisecond) // the first line has waited the interval
		synctest.Wait()
		if got := r.got(); len(got) != 1 || got[0] != "a\nb\n" {
			t.Fatalf("after the interval: %q, want one write of both lines", got)
		}
		fmt.Fprintln(w, "c") // a new batch starts its own interval
		time.Sleep(99 * time.Millisecond)
		synctest.Wait()
		if got := r.got(); len(got) != 1 {
			t.Fatalf("second batch written early: %q", got)
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		if got := r.got(); len(got) != 2 || got[1] != "c\n" {
			t.Fatalf("second batch: %q", got)
		}
		time.Sleep(time.Second) // nothing buffered: no empty writes
		if got := r.got(); len(got) != 2 {
			t.Fatalf("writes while idle: %q", got)
		}
	})
}

func TestFlushLimitAndClose(t *testing.T) {
	var r recorder
	w := New(&r, time.Hour)
	line := strings.Repeat("x", 1023) + "\n"
	for range Limit/len(line) - 1 {
		w.Write([]byte(line))
	}
	if got := r.got(); len(got) != 0 {
		t.Fatalf("%d writes below the limit", len(got))
	}
	w.Write([]byte(line)) // reaches the limit
	if got := r.got(); len(got) != 1 || len(got[0]) != Limit {
		t.Fatalf("at the limit: %d writes", len(got))
	}
	fmt.Fprintln(w, "flushed")
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(w, "closed")
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(w, "after") // written through
	want := []string{"flushed\n", "closed\n", "after\n"}
	if got := r.got()[1:]; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("writes %q, want %q", got, want)
	}
	var nilW *Writer
	if nilW.Flush() != nil || nilW.Close() != nil {
		t.Error("a nil Writer reported an error")
	}
}

func TestWriteErrorReportedByClose(t *testing.T) {
	r := recorder{fail: errors.New("disk full")}
	w := New(&r, time.Hour)
	fmt.Fprintln(w, "lost")
	if err := w.Close(); err == nil || err.Error() != "disk full" {
		t.Errorf("Close: %v, want the write error", err)
	}
}

func TestConcurrentLinesStayWhole(t *testing.T) {
	var out bytes.Buffer
	var mu sync.Mutex
	w := New(writerFunc(func(p []byte) (int, error) { mu.Lock(); defer mu.Unlock(); return out.Write(p) }), time.Millisecond)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 500 {
				fmt.Fprintf(w, "%d-%d %s\n", g, i, strings.Repeat("y", 100))
			}
		})
	}
	wg.Wait()
	w.Close()
	lines := strings.Split(strings.TrimSuffix(out.String(), "\n"), "\n")
	if len(lines) != 4000 {
		t.Fatalf("%d lines, want 4000", len(lines))
	}
	for _, l := range lines {
		if len(l) < 103 || !strings.HasSuffix(l, strings.Repeat("y", 100)) {
			t.Fatalf("torn line %q", l)
		}
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

func TestHandlerWritesWarningsAtOnce(t *testing.T) {
	var r recorder
	w := New(&r, time.Hour)
	log := slog.New(Handler(slog.NewTextHandler(w, &slog.HandlerOptions{ReplaceAttr: dropTime}), w, slog.LevelWarn))
	log.Info("one")
	log.With("k", "v").WithGroup("g").Info("two", "x", 1)
	if got := r.got(); len(got) != 0 {
		t.Fatalf("info written at once: %q", got)
	}
	log.Warn("three")
	want := "level=INFO msg=one\nlevel=INFO msg=two k=v g.x=1\nlevel=WARN msg=three\n"
	if got := r.got(); len(got) != 1 || got[0] != want {
		t.Fatalf("after a warning: %q, want one write of %q", got, want)
	}
	log.With("k", "v").Error("four")
	if got := r.got(); len(got) != 2 {
		t.Fatalf("error not written at once (a handler from With): %q", got)
	}
}

func dropTime(_ []string, a slog.Attr) slog.Attr {
	if a.Key == slog.TimeKey {
		return slog.Attr{}
	}
	return a
}
