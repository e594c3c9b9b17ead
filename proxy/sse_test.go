package proxy

import (
	"errors"
	"io"
	"strings"
	"testing"
)

func TestSSEReader(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []event
		err  error
	}{
		{"one event", "event: message\ndata: {\"a\":1}\n\n", []event{{name: "message", data: []byte(`{"a":1}`)}}, io.EOF},
		{"crlf and cr", "data: x\r\n\r\ndata: y\r\r", []event{{data: []byte("x")}, {data: []byte("y")}}, io.EOF},
		{"multi-line data", "data: a\ndata: b\n\n", []event{{data: []byte("a\nb")}}, io.EOF},
		{"comments skipped", ": keep-alive\n\ndata: x\n\n", []event{{data: []byte("x")}}, io.EOF},
		{"id and retry only", "id: 7\nretry: 1000\n\n", []event{{id: "7", hasID: true, retry: "1000"}}, io.EOF},
		{"id with NUL ignored", "id: a\x00b\ndata: x\n\n", []event{{data: []byte("x")}}, io.EOF},
		{"no space after colon", "data:x\n\n", []event{{data: []byte("x")}}, io.EOF},
		{"unterminated last event", "data: x\n\ndata: y", []event{{data: []byte("x")}}, io.ErrUnexpectedEOF},
		{"byte order mark skipped", "\ufeffdata: x\n\n", []event{{data: []byte("x")}}, io.EOF},
		{"oversized event", "data: " + strings.Repeat("a", 200) + "\n\n", nil, errEventTooLarge},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newSSEReader(strings.NewReader(tt.in), 100)
			var got []event
			var err error
			for {
				var ev event
				ev, err = r.next()
				if err != nil {
					break
				}
				got = append(got, ev)
			}
			if !errors.Is(err, tt.err) {
				t.Fatalf("err = %v, want %v", err, tt.err)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %d events %+v, want %d", len(got), got, len(tt.want))
			}
			for i := range got {
				g, w := got[i], tt.want[i]
				if g.id != w.id || g.hasID != w.hasID || g.name != w.name || string(g.data) != string(w.data) || g.retry != w.retry {
					t.Errorf("event %d = %+v, want %+v", i, g, w)
				}
			}
		})
	}
}

// FuzzSSEReader: the parser of the gateway's streams never panics, never
// returns an event beyond the bound, and always terminates.
func FuzzSSEReader(f *testing.F) {
	for _, s := range []string{
		"event: message\ndata: {}\n\n", "data: a\r\ndata: b\r\n\r\n", "id: 1\nretry: 5\n\n",
		": c\n\ndata", "data: \x00\n\n", "\r\r\r\n\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		const max = 256
		r := newSSEReader(strings.NewReader(string(in)), max)
		for i := 0; i <= len(in)+1; i++ {
			ev, err := r.next()
			if err != nil {
				return
			}
			if len(ev.data) > max {
				t.Fatalf("event data of %d bytes exceeds the %d bound", len(ev.data), max)
			}
		}
		t.Fatal("reader did not terminate")
	})
}
