package proxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// rawGateway is a TCP server that answers each request with what answer
// writes, byte for byte: the gateway misbehaves exactly as a test says.
// conns counts the connections it accepted.
type rawGateway struct {
	url   string
	conns atomic.Int32
}

func startRawGateway(t testing.TB, answer func(n int, req *http.Request, w io.Writer) (keep bool)) *rawGateway {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &rawGateway{url: "http://" + ln.Addr().String() + "/mcp"}
	var served atomic.Int32
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			g.conns.Add(1)
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					_, _ = io.Copy(io.Discard, req.Body)
					if !answer(int(served.Add(1)), req, c) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close() })
	return g
}

func okAnswer(body string) string {
	return fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
}

func newTestH1(idle time.Duration) *h1Client {
	return newH1Client(http.DefaultTransport, &net.Dialer{Timeout: 5 * time.Second}, idle, 16)
}

// h1Get posts to url and returns the answer's body read whole.
func h1Get(ctx context.Context, c *h1Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(`{"jsonrpc":"2.0","id":1,"method":"ping"}`))
	if err != nil {
		return "", err
	}
	res, err := c.RoundTrip(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	data, err := io.ReadAll(res.Body)
	return string(data), err
}

// TestH1ClientReuse: answers framed by Content-Length or chunks, read to
// their end, leave the connection for the next call; answers whose end is
// the connection's, or that the caller left unread, do not.
func TestH1ClientReuse(t *testing.T) {
	for _, tc := range []struct {
		name      string
		answer    string
		readWhole bool
		wantConns int32
	}{
		{"content-length", okAnswer(`{"n":1}`), true, 1},
		{"chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n7\r\n{\"n\":1}\r\n0\r\n\r\n", true, 1},
		{"empty 202", "HTTP/1.1 202 Accepted\r\nContent-Length: 0\r\n\r\n", true, 1},
		{"connection close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 7\r\n\r\n{\"n\":1}", true, 3},
		{"left unread", okAnswer(`{"n":1}`), false, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startRawGateway(t, func(_ int, _ *http.Request, w io.Writer) bool {
				_, err := io.WriteString(w, tc.answer)
				return err == nil && !strings.Contains(tc.answer, "Connection: close")
			})
			c := newTestH1(time.Minute)
			defer c.CloseIdleConnections()
			for range 3 {
				req, _ := http.NewRequest(http.MethodPost, g.url, strings.NewReader("{}"))
				res, err := c.RoundTrip(req)
				if err != nil {
					t.Fatal(err)
				}
				if tc.readWhole {
					_, _ = io.Copy(io.Discard, res.Body)
				}
				res.Body.Close()
			}
			if n := g.conns.Load(); n != tc.wantConns {
				t.Errorf("the gateway saw %d connections, want %d", n, tc.wantConns)
			}
		})
	}
}

// TestH1ClientNeverMisattributes: bytes a gateway sends that no request
// asked for (an answer sent twice, an answer ahead of its request) are
// never read as the answer to a later request; a connection the gateway
// closed while idle is not used.
func TestH1ClientNeverMisattributes(t *testing.T) {
	strays := make(chan struct{}, 8) // a stray answer was sent
	for _, tc := range []struct {
		name   string
		answer func(n int, w io.Writer) bool
	}{
		{"answer sent twice", func(n int, w io.Writer) bool {
			a := okAnswer(fmt.Sprintf(`{"n":%d}`, n))
			_, _ = io.WriteString(w, a)
			_, _ = io.WriteString(w, a)
			return true
		}},
		{"a stray answer after a while", func(n int, w io.Writer) bool {
			_, _ = io.WriteString(w, okAnswer(fmt.Sprintf(`{"n":%d}`, n)))
			go func() {
				time.Sleep(10 * time.Millisecond)
				_, _ = io.WriteString(w, okAnswer(`{"n":"stray"}`))
				strays <- struct{}{}
			}()
			return true
		}},
		{"closed after each answer", func(n int, w io.Writer) bool {
			_, _ = io.WriteString(w, okAnswer(fmt.Sprintf(`{"n":%d}`, n)))
			return false
		}},
		// The connection is clean at its first reuse and not at its second:
		// idleClean's peek, kept from the first, sees the stray answer.
		{"answer sent twice on a reused connection", func(n int, w io.Writer) bool {
			a := okAnswer(fmt.Sprintf(`{"n":%d}`, n))
			_, _ = io.WriteString(w, a)
			if n == 2 {
				_, _ = io.WriteString(w, a)
			}
			return true
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startRawGateway(t, func(n int, _ *http.Request, w io.Writer) bool { return tc.answer(n, w) })
			c := newTestH1(time.Minute)
			defer c.CloseIdleConnections()
			for i := 1; i <= 3; i++ {
				body, err := h1Get(context.Background(), c, g.url)
				if err != nil {
					t.Fatalf("call %d: %v", i, err)
				}
				if want := fmt.Sprintf(`{"n":%d}`, i); body != want {
					t.Fatalf("call %d got %s, want %s", i, body, want)
				}
				if tc.name == "a stray answer after a while" {
					select { // the stray answer arrives before the next call
					case <-strays:
					case <-time.After(5 * time.Second):
						t.Fatal("the gateway sent no stray answer")
					}
				}
				time.Sleep(20 * time.Millisecond)
			}
			want := int32(3) // none may be reused
			if tc.name == "answer sent twice on a reused connection" {
				want = 2 // the first carries two calls
			}
			if n := g.conns.Load(); n != want {
				t.Errorf("the gateway saw %d connections, want %d", n, want)
			}
		})
	}
}

// TestH1ClientRefuses: answers the proxy must not take.
func TestH1ClientRefuses(t *testing.T) {
	for _, tc := range []struct {
		name, answer, want string
	}{
		{"switching protocols", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", "switched protocols"},
		{"headers too large", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("a", maxResponseHeaderBytes) + "\r\n\r\n", "exceed 1 MiB"},
		{"endless 1xx", strings.Repeat("HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n", max1xx+1) + okAnswer("{}"), "informational"},
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n", "malformed HTTP"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := startRawGateway(t, func(_ int, _ *http.Request, w io.Writer) bool {
				_, _ = io.WriteString(w, tc.answer)
				return false
			})
			c := newTestH1(time.Minute)
			_, err := h1Get(context.Background(), c, g.url)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error saying %q", err, tc.want)
			}
		})
	}
	t.Run("early hints then the answer", func(t *testing.T) {
		g := startRawGateway(t, func(_ int, _ *http.Request, w io.Writer) bool {
			_, _ = io.WriteString(w, "HTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\n"+okAnswer(`{"ok":true}`))
			return true
		})
		body, err := h1Get(context.Background(), newTestH1(time.Minute), g.url)
		if err != nil || body != `{"ok":true}` {
			t.Fatalf("got %q, %v", body, err)
		}
	})
	t.Run("invalid header value", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodPost, "http://127.0.0.1:1/mcp", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer a\r\nX-Injected: 1")
		if _, err := newTestH1(time.Minute).RoundTrip(req); err == nil || !strings.Contains(err.Error(), "invalid header field value") {
			t.Fatalf("got %v", err)
		}
	})
}

// TestH1ClientCancel: the request's context ends a call wherever it is,
// and the connection is not reused; Close ends a Read blocked on a stream.
func TestH1ClientCancel(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	g := startRawGateway(t, func(n int, req *http.Request, w io.Writer) bool {
		switch req.Header.Get("X-Case") {
		case "headers":
			<-release
		case "body":
			_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n")
			<-release
		default:
			_, _ = io.WriteString(w, okAnswer(`{}`))
			return true
		}
		return false
	})
	c := newTestH1(time.Minute)
	call := func(ctx context.Context, which string) (*http.Response, error) {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, g.url, strings.NewReader("{}"))
		req.Header.Set("X-Case", which)
		return c.RoundTrip(req)
	}

	t.Run("waiting for headers", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		start := time.Now()
		_, err := call(ctx, "headers")
		if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
			t.Fatalf("got %v after %v, want the context's deadline promptly", err, time.Since(start))
		}
	})
	t.Run("reading the body", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		res, err := call(ctx, "body")
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(50*time.Millisecond, cancel)
		_, err = res.Body.Read(make([]byte, 10))
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want context.Canceled", err)
		}
	})
	t.Run("body closed by another goroutine", func(t *testing.T) {
		res, err := call(context.Background(), "body")
		if err != nil {
			t.Fatal(err)
		}
		time.AfterFunc(50*time.Millisecond, func() { res.Body.Close() })
		done := make(chan error, 1)
		go func() { _, err := res.Body.Read(make([]byte, 10)); done <- err }()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a Read of a closed body succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Close did not end the blocked Read")
		}
	})
	before := g.conns.Load()
	if _, err := h1Get(context.Background(), c, g.url); err != nil {
		t.Fatal(err)
	}
	if g.conns.Load() != before+1 {
		t.Errorf("a cancelled call's connection was reused")
	}
}

// TestH1ClientHeaderTimeout: the header timeout bounds the wait for an
// answer's headers, on a new connection and on a reused one, and not the
// wait for its body: a stream outlives it.
func TestH1ClientHeaderTimeout(t *testing.T) {
	const bound, late = 100 * time.Millisecond, 300 * time.Millisecond
	g := startRawGateway(t, func(n int, req *http.Request, w io.Writer) bool {
		switch req.Header.Get("X-Case") {
		case "late headers":
			time.Sleep(late)
		case "late body":
			_, _ = io.WriteString(w, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n")
			time.Sleep(late)
			_, _ = io.WriteString(w, "{}")
			return true
		}
		_, _ = io.WriteString(w, okAnswer(`{}`))
		return true
	})
	c := newTestH1(time.Minute)
	for _, tt := range []struct {
		which string
		err   error // nil: the body "{}"
		conns int32 // connections the gateway has accepted after the call
	}{
		{"late body", nil, 1},
		{"late body", nil, 1}, // the connection's deadline was lifted for the next call too
		{"on time", nil, 1},
		{"late headers", errHeaderTimeout, 1},
		{"late headers", errHeaderTimeout, 2}, // a timed-out call's connection is not reused
		{"late body", nil, 3},
	} {
		req, _ := http.NewRequest(http.MethodPost, g.url, strings.NewReader("{}"))
		req.Header.Set("X-Case", tt.which)
		start := time.Now()
		res, err := c.roundTrip(req.Context(), req, bound)
		var body []byte
		if err == nil {
			body, err = io.ReadAll(res.Body)
			res.Body.Close()
		}
		switch {
		case tt.err != nil && (!errors.Is(err, tt.err) || time.Since(start) >= late):
			t.Errorf("%s: got %v after %v, want %v within %v", tt.which, err, time.Since(start), tt.err, late)
		case tt.err == nil && (err != nil || string(body) != "{}"):
			t.Errorf("%s: got %q, %v; want {}", tt.which, body, err)
		}
		if got := g.conns.Load(); got != tt.conns {
			t.Errorf("%s: the gateway accepted %d connections, want %d", tt.which, got, tt.conns)
		}
	}
}

// TestH1ClientIdleTimeout: idle connections are closed once idle for the
// idle timeout, by one timer for the pool.
func TestH1ClientIdleTimeout(t *testing.T) {
	closed := make(chan struct{}, 1)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		conn, err := ln.Accept()
		if err != nil {
			return
		}
		br := bufio.NewReader(conn)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, req.Body)
		_, _ = io.WriteString(conn, okAnswer("{}"))
		_, err = br.ReadByte() // blocks until the client closes
		if err == io.EOF {
			closed <- struct{}{}
		}
	}()
	c := newTestH1(100 * time.Millisecond)
	if _, err := h1Get(context.Background(), c, "http://"+ln.Addr().String()+"/mcp"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-closed:
	case <-time.After(5 * time.Second):
		t.Fatal("the idle connection was not closed after the idle timeout")
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.nidle != 0 || c.sweeper != nil {
		t.Errorf("after the sweep: %d idle, sweeper armed %v", c.nidle, c.sweeper != nil)
	}
}

// countingConn counts the writes made to a connection.
type countingConn struct {
	net.Conn
	writes int
}

func (c *countingConn) Write(p []byte) (int, error) {
	c.writes++
	return c.Conn.Write(p)
}

// TestH1ClientLargeBodyWrites: a 64 KiB request body leaves in a few
// writes, as http.Transport sends it, not one per 4 KiB of buffer (20
// system calls per 64 KiB call before h1Conn.ReadFrom).
func TestH1ClientLargeBodyWrites(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	go func() { _, _ = io.Copy(io.Discard, server) }()
	cc := &countingConn{Conn: client}
	c := &h1Conn{conn: cc}
	c.bw = bufio.NewWriter(c)
	body := strings.Repeat("x", 64<<10)
	req, _ := http.NewRequest(http.MethodPost, "http://gateway/mcp", io.MultiReader(strings.NewReader(body)))
	req.ContentLength = int64(len(body))
	if err := req.Write(c.bw); err != nil {
		t.Fatal(err)
	}
	if err := c.bw.Flush(); err != nil {
		t.Fatal(err)
	}
	if cc.writes > 4 || c.written < int64(len(body)) {
		t.Errorf("%d writes, %d bytes counted, for a %d-byte body: want at most 4 writes and every byte counted", cc.writes, c.written, len(body))
	}
}

// TestH1ClientEarlyAnswerToALargeBody: a gateway that answers a large
// request (413) without reading its body, and keeps the connection open,
// has its answer relayed at once, as http.Transport relays it; h1Client,
// which writes the whole request before it reads, used to wait for the
// header timeout (a large body goes to the transport).
func TestH1ClientEarlyAnswerToALargeBody(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	release := make(chan struct{})
	t.Cleanup(func() { close(release); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 413 Request Entity Too Large\r\nContent-Length: 0\r\n\r\n")
				<-release // the body is never read, the connection stays open
			}()
		}
	}()
	url := "http://" + ln.Addr().String() + "/mcp"
	large := strings.Repeat("x", 16<<20) // more than loopback's socket buffers hold
	for _, tc := range []struct {
		name string
		rt   http.RoundTripper
		body string
	}{
		{"http.Transport", http.DefaultTransport.(*http.Transport).Clone(), large},
		{"h1Client", newH1Client(http.DefaultTransport.(*http.Transport).Clone(), &net.Dialer{}, time.Minute, 16), large},
		// At the bound h1Client sends the body itself (next fails): it
		// fits in the sockets' buffers though the gateway never reads it.
		{"h1Client, a body at the bound", newH1Client(failingRoundTripper{}, &net.Dialer{}, time.Minute, 16), strings.Repeat("x", h1MaxBody)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			req, _ := http.NewRequestWithContext(ctx, http.MethodPost, url, strings.NewReader(tc.body))
			start := time.Now()
			res, err := tc.rt.RoundTrip(req)
			if err != nil {
				t.Fatalf("got %v after %v, want the gateway's 413 at once", err, time.Since(start))
			}
			res.Body.Close()
			if res.StatusCode != http.StatusRequestEntityTooLarge || time.Since(start) > 5*time.Second {
				t.Fatalf("got %d after %v, want 413 at once", res.StatusCode, time.Since(start))
			}
		})
	}
}

type failingRoundTripper struct{}

func (failingRoundTripper) RoundTrip(*http.Request) (*http.Response, error) {
	return nil, errors.New("sent to next")
}
