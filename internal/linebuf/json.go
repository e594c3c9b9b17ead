package linebuf

import (
	"context"
	"log/slog"
	"strconv"
	"time"
	"unicode/utf8"
)

// NewJSONHandler returns a handler writing what slog.NewJSONHandler(w,
// opts) writes, byte for byte, appending the common record straight into
// w's batch: no buffer of its own, no reflection, nothing allocated (issue
// #18: the proxy logs a line per policy decision). The common record is
// one with attributes of kinds string, int64, uint64, bool and duration,
// none empty-keyed or in a group, from a handler with neither AddSource
// nor ReplaceAttr; any other goes through slog's own JSON handler on w.
// Handlers made by WithAttrs and WithGroup are slog's.
func NewJSONHandler(w *Writer, opts *slog.HandlerOptions) slog.Handler {
	if opts == nil {
		opts = &slog.HandlerOptions{}
	}
	return &jsonHandler{w: w, slow: slog.NewJSONHandler(w, opts), level: opts.Level,
		fast: !opts.AddSource && opts.ReplaceAttr == nil}
}

type jsonHandler struct {
	w     *Writer
	slow  *slog.JSONHandler
	level slog.Leveler // nil: Info
	fast  bool
}

func (h *jsonHandler) Enabled(_ context.Context, l slog.Level) bool {
	least := slog.LevelInfo
	if h.level != nil {
		least = h.level.Level()
	}
	return l >= least
}

func (h *jsonHandler) WithAttrs(as []slog.Attr) slog.Handler { return h.slow.WithAttrs(as) }
func (h *jsonHandler) WithGroup(name string) slog.Handler    { return h.slow.WithGroup(name) }

func (h *jsonHandler) Handle(ctx context.Context, r slog.Record) error {
	if !h.fast {
		return h.slow.Handle(ctx, r)
	}
	w := h.w
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return h.slow.Handle(ctx, r) // written through
	}
	n := len(w.buf)
	buf, ok := appendRecord(w.buf, &r)
	if !ok {
		w.buf = buf[:n]
		w.mu.Unlock()
		return h.slow.Handle(ctx, r)
	}
	w.buf = buf
	err := w.appendedLocked(len(buf) - n)
	w.mu.Unlock()
	return err
}

// appendRecord appends r as slog's JSON handler writes it, or reports that
// r is not a common record (NewJSONHandler).
func appendRecord(b []byte, r *slog.Record) ([]byte, bool) {
	b = append(b, '{')
	if !r.Time.IsZero() {
		t := r.Time.Round(0) // as slog: no monotonic reading
		if y := t.Year(); y < 0 || y >= 10000 {
			return b, false // slog writes an error of its own
		}
		b = append(b, `"time":"`...)
		b = t.AppendFormat(b, time.RFC3339Nano)
		b = append(b, `",`...)
	}
	b = append(b, `"level":`...)
	b = appendString(b, r.Level.String())
	b = append(b, `,"msg":`...)
	b = appendString(b, r.Message)
	ok := true
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == "" {
			ok = false // empty Attrs are dropped, others written with their key: slog knows which
			return false
		}
		b = append(b, ',')
		b = appendString(b, a.Key)
		b = append(b, ':')
		switch v := a.Value; v.Kind() {
		case slog.KindString:
			b = appendString(b, v.String())
		case slog.KindInt64:
			b = strconv.AppendInt(b, v.Int64(), 10)
		case slog.KindUint64:
			b = strconv.AppendUint(b, v.Uint64(), 10)
		case slog.KindBool:
			b = strconv.AppendBool(b, v.Bool())
		case slog.KindDuration:
			b = strconv.AppendInt(b, int64(v.Duration()), 10)
		default:
			ok = false
		}
		return ok
	})
	return append(b, '}', '\n'), ok
}

// appendString appends s quoted as slog's JSON handler quotes it: control
// characters, '"' and '\' escaped, invalid UTF-8 as \ufffd, U+2028 and
// U+2029 escaped; everything else as it is.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		if i+8 <= len(s) && plain8(s[i:i+8]) {
			i += 8
			continue
		}
		c := s[i]
		if plain[c] {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xF])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xF])
		default:
			i += size
			continue
		}
		i += size
		start = i
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}

// plain8 reports whether the 8 bytes of s are all plain, a word at a
// time: none below 0x20, none '"' or '\\', none 0x80 or above (a byte
// that is zero in x - ones, having borrowed, has its top bit set there;
// a borrow can only mark a byte above one that is already marked).
func plain8(s string) bool {
	const ones, highs = 0x0101010101010101, 0x8080808080808080
	x := uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
	quote, backslash := x^(ones*'"'), x^(ones*'\\')
	odd := x | (x-ones*0x20) & ^x | (quote-ones) & ^quote | (backslash-ones) & ^backslash
	return odd&highs == 0
}

const hex = "0123456789abcdef"

// plain holds the bytes appendString copies as they are: ASCII but for
// control characters, '"' and '\'.
var plain = func() (p [256]bool) {
	for c := 0x20; c < utf8.RuneSelf; c++ {
		p[c] = c != '"' && c != '\\'
	}
	return p
}()
