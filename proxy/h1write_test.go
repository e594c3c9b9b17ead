package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// requestCase builds a request afresh for each writer (the writers consume
// and close its body).
type requestCase struct {
	name   string
	method string
	url    string
	host   string
	header http.Header
	body   string
	length int64 // ContentLength when a body is set and it differs from len(body)
	close  bool
}

func (c requestCase) build(t testing.TB) *http.Request {
	u, err := url.Parse(c.url)
	if err != nil {
		t.Fatal(err)
	}
	req := &http.Request{Method: c.method, URL: u, Host: c.host, Header: http.Header{}, Close: c.close}
	for k, vv := range c.header {
		req.Header[k] = append([]string(nil), vv...)
	}
	if c.body != "" {
		req.Body = io.NopCloser(strings.NewReader(c.body))
		req.ContentLength = int64(len(c.body))
		if c.length != 0 {
			req.ContentLength = c.length
		}
	}
	return req
}

// write runs a writer on a fresh request and returns its bytes and error.
func write(t testing.TB, c requestCase, w func(*bufio.Writer, *http.Request) error) (string, error) {
	var out bytes.Buffer
	bw := bufio.NewWriter(&out)
	err := w(bw, c.build(t))
	bw.Flush()
	return out.String(), err
}

func netHTTPWrite(w *bufio.Writer, req *http.Request) error { return req.Write(w) }

// TestWriteRequestLikeNetHTTP holds writeRequest to net/http's
// Request.Write: the same bytes, or an error from both.
func TestWriteRequestLikeNetHTTP(t *testing.T) {
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://api.github.com/"}}}`
	tests := []requestCase{
		{name: "a call as the proxy sends it", method: "POST", url: "http://gw:8080/mcp", host: "gw:8080",
			header: http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"},
				"Mcp-Session-Id": {"abc"}, "Mcp-Protocol-Version": {"2025-11-25"},
				"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}, body: call},
		{name: "the agent's User-Agent", method: "POST", url: "http://gw/mcp", header: http.Header{"User-Agent": {"agent/1.0"}}, body: call},
		{name: "an empty User-Agent sends none", method: "POST", url: "http://gw/mcp", header: http.Header{"User-Agent": {""}}, body: call},
		{name: "User-Agent key with no values", method: "POST", url: "http://gw/mcp", header: http.Header{"User-Agent": {}}, body: call},
		{name: "a blank User-Agent is sent empty", method: "POST", url: "http://gw/mcp", header: http.Header{"User-Agent": {" \t"}}, body: call},
		{name: "values trimmed, several values, empty value", method: "POST", url: "http://gw/mcp",
			header: http.Header{"X-A": {"  a  ", "\tb\t"}, "X-Empty": {""}, "Accept-Language": {"en", "fr"}}, body: call},
		{name: "many headers (more than the stack array)", method: "POST", url: "http://gw/mcp", header: func() http.Header {
			h := http.Header{}
			for _, k := range strings.Fields("A B C D E F G H I J K L M N O P Q R S T") {
				h["X-"+k] = []string{k}
			}
			return h
		}(), body: call},
		{name: "excluded headers are the writer's own", method: "POST", url: "http://gw/mcp",
			header: http.Header{"Host": {"evil"}, "Content-Length": {"1"}, "Transfer-Encoding": {"chunked"}, "Trailer": {"X"}}, body: call},
		{name: "a header name that is not a token is dropped", method: "POST", url: "http://gw/mcp", header: http.Header{"Bad Name": {"x"}}, body: call},
		{name: "lower-case names stay as given", method: "POST", url: "http://gw/mcp", header: http.Header{"x-lower": {"v"}}, body: call},
		{name: "GET without a body: no Content-Length", method: "GET", url: "http://gw/mcp", header: http.Header{"Accept": {"text/event-stream"}, "Last-Event-Id": {"7"}}},
		{name: "DELETE without a body: no Content-Length", method: "DELETE", url: "http://gw/mcp", header: http.Header{"Mcp-Session-Id": {"abc"}}},
		{name: "POST without a body: Content-Length 0", method: "POST", url: "http://gw/mcp"},
		{name: "empty method is GET", method: "", url: "http://gw/mcp"},
		{name: "query and escaped path", method: "POST", url: "http://gw/a%20b/mcp?x=1&y=%2F", body: call},
		{name: "empty path", method: "POST", url: "http://gw", body: call},
		{name: "Host from the URL", method: "POST", url: "http://gw.example:9000/mcp", body: call},
		{name: "Host overrides the URL", method: "POST", url: "http://10.0.0.1/mcp", host: "gateway.internal", body: call},
		{name: "IPv6 zone removed", method: "POST", url: "http://[fe80::1%25en0]:8080/mcp", body: call},
		{name: "invalid Host sent empty", method: "POST", url: "http://gw/mcp", host: "a b", body: call},
		{name: "internationalised host in punycode", method: "POST", url: "http://gw/mcp", host: "bücher.example", body: call},
		{name: "Close adds Connection: close", method: "POST", url: "http://gw/mcp", close: true, body: call},
		{name: "Close with Connection: close already", method: "POST", url: "http://gw/mcp", close: true, header: http.Header{"Connection": {"keep-alive, close"}}, body: call},
		{name: "Close with close in a second Connection value", method: "POST", url: "http://gw/mcp", close: true, header: http.Header{"Connection": {"keep-alive", "close"}}, body: call},
		{name: "Close with a Connection value net/http reads as close", method: "POST", url: "http://gw/mcp", close: true, header: http.Header{"Connection": {"x close"}}, body: call},
		{name: "CONNECT", method: "CONNECT", url: "http://gw", body: call},
		{name: "body shorter than its length", method: "POST", url: "http://gw/mcp", body: "abc", length: 5},
		{name: "body longer than its length", method: "POST", url: "http://gw/mcp", body: "abcdef", length: 3},
		{name: "control character in the path", method: "POST", url: "http://gw/mcp", body: call},
	}
	// url.Parse refuses control characters; the proxy's URL is built once
	// from the configuration, but the writer must refuse one all the same.
	ctl := len(tests) - 1
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mk := func(bw *bufio.Writer, req *http.Request, w func(*bufio.Writer, *http.Request) error) error {
				if i == ctl {
					req.URL.Path = "/m\x01cp"
				}
				return w(bw, req)
			}
			want, werr := write(t, tt, func(bw *bufio.Writer, r *http.Request) error { return mk(bw, r, netHTTPWrite) })
			got, gerr := write(t, tt, func(bw *bufio.Writer, r *http.Request) error { return mk(bw, r, writeRequest) })
			if (werr == nil) != (gerr == nil) {
				t.Fatalf("errors differ: net/http %v, writeRequest %v", werr, gerr)
			}
			if werr != nil {
				if werr.Error() != gerr.Error() {
					t.Errorf("error %q, net/http says %q", gerr, werr)
				}
				return
			}
			if got != want {
				t.Errorf("writeRequest wrote\n%q\nnet/http writes\n%q", got, want)
			}
		})
	}
}

// TestWriteRequestRefusesWhatItDoesNotFrame: a body of unknown length,
// Transfer-Encoding or trailers are the transport's (smallBody sends them
// there); writeRequest refuses them rather than frame them wrongly.
func TestWriteRequestRefusesWhatItDoesNotFrame(t *testing.T) {
	body := func() io.ReadCloser { return io.NopCloser(strings.NewReader("x")) }
	u, _ := url.Parse("http://gw/mcp")
	tests := map[string]*http.Request{
		"unknown length":            {Method: "POST", URL: u, Header: http.Header{}, Body: body(), ContentLength: 0},
		"negative length":           {Method: "POST", URL: u, Header: http.Header{}, Body: body(), ContentLength: -1},
		"length without a body":     {Method: "POST", URL: u, Header: http.Header{}, ContentLength: 3},
		"Transfer-Encoding chunked": {Method: "POST", URL: u, Header: http.Header{}, Body: body(), ContentLength: 1, TransferEncoding: []string{"chunked"}},
		"trailers":                  {Method: "POST", URL: u, Header: http.Header{}, Body: body(), ContentLength: 1, Trailer: http.Header{"X": nil}},
	}
	for name, req := range tests {
		var out bytes.Buffer
		bw := bufio.NewWriter(&out)
		if err := writeRequest(bw, req); err == nil {
			bw.Flush()
			t.Errorf("%s: written %q, want an error", name, out.String())
		}
	}
}

// FuzzWriteRequest holds writeRequest to Request.Write on hostile header
// names and values, hosts, paths, methods and Close.
func FuzzWriteRequest(f *testing.F) {
	f.Add("POST", "/mcp", "gw:80", "X-A", " v\t", "body", false)
	f.Add("GET", "/?q=%00", "[fe80::1%en0]:1", "Bad Name", "a\r\nb", "", false)
	f.Add("PO ST", "/", "a b", "User-Agent", "", "x", false)
	f.Add("CONNECT", "", "gw:443", "X-A", "v", "", false)
	f.Add("POST", "/mcp", "gw", "Connection", "x close", "x", true)
	f.Add("POST", "/mcp", "gw", "User-Agent", " ", "x", false)
	f.Fuzz(func(t *testing.T, method, path, host, key, value, body string, close bool) {
		c := requestCase{method: method, url: "http://gw/", host: host, header: http.Header{key: {value}}, body: body, close: close}
		build := func(bw *bufio.Writer, w func(*bufio.Writer, *http.Request) error) (string, error) {
			req := c.build(t)
			req.URL.Path = path
			err := w(bw, req)
			return "", err
		}
		var a, b bytes.Buffer
		wa, wb := bufio.NewWriter(&a), bufio.NewWriter(&b)
		_, werr := build(wa, netHTTPWrite)
		_, gerr := build(wb, writeRequest)
		wa.Flush()
		wb.Flush()
		if werr != nil || gerr != nil {
			// writeRequest may refuse more (a method that is not a token,
			// which the transport refuses before Request.Write), never less.
			if werr != nil && gerr == nil {
				t.Fatalf("net/http refused (%v), writeRequest wrote %q", werr, b.String())
			}
			return
		}
		if a.String() != b.String() {
			t.Fatalf("writeRequest wrote\n%q\nnet/http writes\n%q", b.String(), a.String())
		}
	})
}

// BenchmarkWriteRequest: a small call's request as the proxy sends it,
// written by net/http's Request.Write and by writeRequest.
//
//	go test -run '^$' -bench WriteRequest -count 8 ./proxy/
func BenchmarkWriteRequest(b *testing.B) {
	call := `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url","arguments":{"url":"https://api.github.com/"}}}`
	u, _ := url.Parse("http://127.0.0.1:8080/mcp")
	h := http.Header{"Content-Type": {"application/json"}, "Accept": {"application/json, text/event-stream"},
		"Mcp-Session-Id": {"a3f1c2d4e5b6a7980112233445566778"}, "Mcp-Protocol-Version": {"2025-11-25"},
		"Traceparent": {"00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"}}
	body := strings.NewReader(call)
	for _, w := range []struct {
		name  string
		write func(*bufio.Writer, *http.Request) error
	}{{"net/http", netHTTPWrite}, {"writeRequest", writeRequest}} {
		b.Run(w.name, func(b *testing.B) {
			bw := bufio.NewWriter(io.Discard)
			req := &http.Request{Method: "POST", URL: u, Host: u.Host, Header: h, ContentLength: int64(len(call))}
			b.ReportAllocs()
			for b.Loop() {
				body.Reset(call)
				req.Body = io.NopCloser(body)
				if err := w.write(bw, req); err != nil {
					b.Fatal(err)
				}
				bw.Flush()
			}
		})
	}
}
