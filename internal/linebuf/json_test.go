package linebuf

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"
)

// slogLine is what slog's own JSON handler writes for r.
func slogLine(t testing.TB, r slog.Record, opts *slog.HandlerOptions) string {
	var b bytes.Buffer
	if err := slog.NewJSONHandler(&b, opts).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// ourLine is what NewJSONHandler writes for r, through a Writer.
func ourLine(t testing.TB, r slog.Record, opts *slog.HandlerOptions) string {
	var b bytes.Buffer
	w := New(&b, time.Hour)
	if err := NewJSONHandler(w, opts).Handle(context.Background(), r); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func record(tm time.Time, level slog.Level, msg string, attrs ...slog.Attr) slog.Record {
	r := slog.NewRecord(tm, level, msg, 0)
	r.AddAttrs(attrs...)
	return r
}

// TestJSONHandlerSameAsSlog: every record, common or not, is written as
// slog's JSON handler writes it, byte for byte.
func TestJSONHandlerSameAsSlog(t *testing.T) {
	var all strings.Builder
	for c := range 256 {
		all.WriteByte(byte(c))
	}
	tm := time.Date(2026, 12, 5, 6, 40, 1, 123456789, time.UTC)
	east := time.FixedZone("east", 5*3600+1800)
	type stringer struct{ slog.LogValuer }
	for _, tc := range []struct {
		name string
		r    slog.Record
		opts *slog.HandlerOptions
	}{
		{"decision", record(time.Now(), slog.LevelInfo, "policy decision", slog.String("method", "tools/call"),
			slog.String("tool", "fetch_url"), slog.String("decision", "allow"), slog.String("rule", "fetch_url/approved-hosts"),
			slog.String("reason", ""), slog.String("mode", "enforce"), slog.String("session", "3f2a"), slog.Int64("took_us", 3)), nil},
		{"every byte", record(tm, slog.LevelWarn, all.String(), slog.String(all.String(), all.String())), nil},
		{"unicode", record(tm, slog.LevelError, "é\u2028\u2029\U0001F600\xff\xc3", slog.String("k\u2029", "\xed\xa0\x80 ü <&> \x7f")), nil},
		{"kinds", record(tm, slog.LevelDebug, "", slog.Int64("i", -1<<63), slog.Uint64("u", 1<<64-1), slog.Bool("b", true),
			slog.Bool("f", false), slog.Duration("d", -time.Second), slog.Int("n", 0)), &slog.HandlerOptions{Level: slog.LevelDebug}},
		{"levels between", record(tm.In(east), slog.LevelInfo+2, "m"), nil},
		{"zero time", record(time.Time{}, slog.LevelWarn-1, "m", slog.String("a", "b")), nil},
		{"monotonic", record(time.Now(), slog.LevelInfo, "m"), nil},
		{"float", record(tm, slog.LevelInfo, "m", slog.Float64("x", 1e21), slog.String("after", "x")), nil},
		{"time attr", record(tm, slog.LevelInfo, "m", slog.Time("t", tm)), nil},
		{"any", record(tm, slog.LevelInfo, "m", slog.Any("err", errors.New("boom")), slog.Any("m", map[string]int{"a": 1})), nil},
		{"group", record(tm, slog.LevelInfo, "m", slog.Group("g", slog.String("a", "b")), slog.Group("")), nil},
		{"empty attr", record(tm, slog.LevelInfo, "m", slog.Attr{}, slog.String("", "v"), slog.String("k", "v")), nil},
		{"log valuer", record(tm, slog.LevelInfo, "m", slog.Any("v", stringer{})), nil},
		{"year 10000", record(time.Date(10000, 1, 1, 0, 0, 0, 0, time.UTC), slog.LevelInfo, "m"), nil},
		{"source", record(tm, slog.LevelInfo, "m", slog.String("a", "b")), &slog.HandlerOptions{AddSource: true}},
		{"replace", record(tm, slog.LevelInfo, "m", slog.String("a", "b")), &slog.HandlerOptions{
			ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr { a.Key = strings.ToUpper(a.Key); return a }}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, want := ourLine(t, tc.r, tc.opts), slogLine(t, tc.r, tc.opts); got != want {
				t.Errorf("got  %q\nwant %q", got, want)
			}
		})
	}
}

// TestJSONHandlerThroughLogger: a logger's lines, common and not, keep
// their order in the batch; derived loggers and lines after Close are
// written too; levels below the handler's are not.
func TestJSONHandlerThroughLogger(t *testing.T) {
	var got, want bytes.Buffer
	w := New(&got, time.Hour)
	ours := slog.New(NewJSONHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	theirs := slog.New(slog.NewJSONHandler(&want, &slog.HandlerOptions{Level: slog.LevelWarn}))
	tm := time.Date(2026, 12, 5, 6, 40, 1, 0, time.UTC)
	for i, l := range []*slog.Logger{ours, theirs} {
		for _, r := range []slog.Record{
			record(tm, slog.LevelWarn, "first", slog.String("a", "b")),
			record(tm, slog.LevelError, "second", slog.Any("err", errors.New("x"))),
			record(tm, slog.LevelInfo, "not enabled"),
			record(tm, slog.LevelWarn, "third"),
		} {
			if l.Enabled(context.Background(), r.Level) {
				_ = l.Handler().Handle(context.Background(), r)
			}
		}
		l.With("k", "v").Warn("derived")
		if i == 0 {
			if got.Len() != 0 {
				t.Fatalf("written before a flush: %q", got.String())
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
		}
		l.Handler().Handle(context.Background(), record(tm, slog.LevelWarn, "after close"))
	}
	// The derived logger's line carries its own time; compare the rest.
	g, wa := strings.Split(got.String(), "\n"), strings.Split(want.String(), "\n")
	if len(g) != len(wa) {
		t.Fatalf("got\n%s\nwant\n%s", got.String(), want.String())
	}
	for i := range g {
		if strings.Contains(wa[i], "derived") {
			_, g[i], _ = strings.Cut(g[i], `"level"`)
			_, wa[i], _ = strings.Cut(wa[i], `"level"`)
		}
		if g[i] != wa[i] {
			t.Errorf("line %d: got %q, want %q", i, g[i], wa[i])
		}
	}
}

// TestJSONHandlerAllocatesNothing: a common record costs no allocation.
func TestJSONHandlerAllocatesNothing(t *testing.T) {
	w := New(discard{}, time.Hour)
	defer w.Close()
	h := NewJSONHandler(w, nil)
	r := record(time.Now(), slog.LevelInfo, "policy decision", slog.String("method", "tools/call"),
		slog.String("tool", "fetch_url"), slog.String("decision", "allow"), slog.Int64("took_us", 3))
	if n := testing.AllocsPerRun(1000, func() { _ = h.Handle(context.Background(), r) }); n != 0 {
		t.Errorf("%v allocations per line, want 0", n)
	}
}

type discard struct{}

func (discard) Write(p []byte) (int, error) { return len(p), nil }

// FuzzJSONHandlerSameAsSlog: any message, key and value strings are
// written as slog writes them.
func FuzzJSONHandlerSameAsSlog(f *testing.F) {
	f.Add("policy decision", "reason", `host "x" not allowed`, int64(3))
	f.Add("\xff\u2028", "\x00", "\\\t\xc3\x28", int64(-1))
	f.Fuzz(func(t *testing.T, msg, key, val string, n int64) {
		r := record(time.Unix(0, n).UTC(), slog.Level(n%16), msg, slog.String(key, val), slog.Int64(val, n), slog.String("k", key))
		if got, want := ourLine(t, r, nil), slogLine(t, r, nil); got != want {
			t.Errorf("got  %q\nwant %q", got, want)
		}
	})
}

func BenchmarkJSONHandler(b *testing.B) {
	tm := time.Now()
	attrs := []slog.Attr{slog.String("method", "tools/call"),
		slog.String("tool", "fetch_url"), slog.String("decision", "allow"), slog.String("rule", "fetch_url/approved-hosts"),
		slog.String("reason", ""), slog.String("mode", "enforce"), slog.String("session", "abcdefabcdefabcdefabcdefabcdef12"),
		slog.Int64("took_us", 3)}
	for _, bc := range []struct {
		name string
		h    func(*Writer) slog.Handler
	}{
		{"slog", func(w *Writer) slog.Handler { return slog.NewJSONHandler(w, nil) }},
		{"linebuf", func(w *Writer) slog.Handler { return NewJSONHandler(w, nil) }},
	} {
		b.Run(bc.name, func(b *testing.B) {
			w := New(discard{}, time.Hour)
			defer w.Close()
			h := bc.h(w)
			r := record(tm, slog.LevelInfo, "policy decision", attrs...)
			b.ReportAllocs()
			for b.Loop() {
				_ = h.Handle(context.Background(), r)
			}
		})
	}
}

// TestPlain8: a word is plain when each of its bytes is, whatever the
// others: every byte value at every position, among plain bytes and
// beside each byte value (a borrow must not hide or invent one).
func TestPlain8(t *testing.T) {
	for pos := range 8 {
		for c := range 256 {
			for _, beside := range []int{'a', 0x00, 0x1f, 0x20, 0x21, '"', '\\', 0x7f, 0x80, 0xff} {
				w := []byte("abcdefgh")
				w[pos] = byte(c)
				want := plain[c]
				if pos > 0 {
					w[pos-1] = byte(beside)
					want = want && plain[beside]
				}
				if got := plain8(string(w)); got != want {
					t.Fatalf("plain8(%q) = %v, want %v", w, got, want)
				}
			}
		}
	}
}
