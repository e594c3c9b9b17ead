package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// event is one server-sent event (WHATWG HTML §9.2).
type event struct {
	id    string
	hasID bool
	name  string
	data  []byte
	retry string
}

// sseReader parses an event stream from an untrusted peer, bounding every
// line and every event so a stream cannot grow memory without limit.
type sseReader struct {
	r        *bufio.Reader
	maxEvent int
	started  bool // the byte order mark, if any, is skipped
}

func newSSEReader(r io.Reader, maxEvent int) *sseReader {
	return &sseReader{r: bufio.NewReaderSize(r, 16<<10), maxEvent: maxEvent}
}

var errEventTooLarge = errors.New("server-sent event exceeds the size limit")

// next returns the next event that carries data, an id or a retry. It
// returns io.EOF at a clean end of stream.
func (s *sseReader) next() (event, error) {
	if !s.started {
		// A byte order mark before the first line is not part of it
		// (WHATWG HTML §9.2.5): kept, it made the first event's field
		// unreadable and its message was dropped (issue #14).
		s.started = true
		if b, err := s.r.Peek(3); err == nil && string(b) == "\ufeff" {
			_, _ = s.r.Discard(3)
		}
	}
	var ev event
	var data bytes.Buffer
	seen := false
	size := 0
	for {
		line, err := s.readLine(s.maxEvent - size)
		if err != nil {
			if errors.Is(err, io.EOF) && seen {
				// A stream that ends without the blank line loses the
				// last event (WHATWG: "discard"), so do we.
				return event{}, io.ErrUnexpectedEOF
			}
			return event{}, err
		}
		size += len(line) + 1
		if len(line) == 0 {
			if !seen {
				continue
			}
			ev.data = data.Bytes()
			return ev, nil
		}
		if line[0] == ':' {
			continue // comment / keep-alive
		}
		field, value, _ := bytes.Cut(line, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if data.Len() > 0 {
				data.WriteByte('\n')
			}
			data.Write(value)
			seen = true
		case "id":
			if bytes.IndexByte(value, 0) < 0 {
				ev.id, ev.hasID = string(value), true
				seen = true
			}
		case "event":
			ev.name = string(value)
		case "retry":
			ev.retry = string(value)
			seen = true
		}
	}
}

// readLine reads one line (LF, CRLF or CR terminated) of at most max bytes.
func (s *sseReader) readLine(max int) ([]byte, error) {
	var line []byte
	for {
		b, err := s.r.ReadByte()
		if err != nil {
			if err == io.EOF && len(line) > 0 {
				return line, nil
			}
			return nil, err
		}
		switch b {
		case '\n':
			return line, nil
		case '\r':
			if nb, err := s.r.Peek(1); err == nil && nb[0] == '\n' {
				_, _ = s.r.ReadByte()
			}
			return line, nil
		}
		if len(line) >= max {
			return nil, errEventTooLarge
		}
		line = append(line, b)
	}
}

// sseWriter writes an event stream to the agent, flushing after every event
// so nothing waits in a buffer while a tool runs.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	started bool
}

func newSSEWriter(w http.ResponseWriter) *sseWriter {
	return &sseWriter{w: w, rc: http.NewResponseController(w)}
}

// start sends the headers of the stream.
func (s *sseWriter) start(header func(http.Header)) error {
	if s.started {
		return nil
	}
	s.started = true
	h := s.w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-cache")
	h.Set("X-Accel-Buffering", "no")
	if header != nil {
		header(h)
	}
	s.w.WriteHeader(http.StatusOK)
	return s.rc.Flush()
}

// send writes one event. data must not contain raw newlines (canonical JSON
// never does).
func (s *sseWriter) send(id, name string, data []byte) error {
	var b bytes.Buffer
	if id != "" {
		if strings.ContainsAny(id, "\r\n") {
			return fmt.Errorf("event id %q contains a line break", id)
		}
		b.WriteString("id: ")
		b.WriteString(id)
		b.WriteByte('\n')
	}
	if name != "" {
		b.WriteString("event: ")
		b.WriteString(name)
		b.WriteByte('\n')
	}
	b.WriteString("data: ")
	b.Write(data)
	b.WriteString("\n\n")
	if _, err := s.w.Write(b.Bytes()); err != nil {
		return err
	}
	return s.rc.Flush()
}

// sendRaw writes a pre-formatted chunk (an id-only event, a retry, a
// comment) and flushes.
func (s *sseWriter) sendRaw(chunk string) error {
	if _, err := io.WriteString(s.w, chunk); err != nil {
		return err
	}
	return s.rc.Flush()
}
