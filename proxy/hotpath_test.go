package proxy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/textproto"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mark3labs/mcp-go/mcp"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// checkStandardHeaders fails unless validateStandardHeaders and
// standardHeaders answer for the message body and the headers sent exactly
// as mcp-go's ValidateStandardHeaders and StandardHeaders do (the same
// error, the same headers). It skips a body the codec refuses.
func checkStandardHeaders(t *testing.T, version, body, method, name string) {
	t.Helper()
	m, err := jsonrpc.DecodeOne([]byte(body), jsonrpc.Limits{MaxBytes: 1 << 20, MaxDepth: 64})
	if err != nil {
		t.Skip(err)
	}
	r := &http.Request{Header: http.Header{}}
	if method != "" {
		r.Header.Set("Mcp-Method", method)
	}
	if name != "" {
		r.Header.Set("Mcp-Name", name)
	}
	want := fmt.Sprint(mcp.ValidateStandardHeaders(r.Header.Get, version, mcp.MCPMethod(m.Method), m.Params))
	if got := fmt.Sprint(validateStandardHeaders(r, version, m, headerName(m))); got != want {
		t.Errorf("validateStandardHeaders(%s, %q, %q) = %s, mcp-go says %s", body, method, name, got, want)
	}
	wantHdr := http.Header{}
	for k, v := range mcp.StandardHeaders(version, mcp.MCPMethod(m.Method), m.Params) {
		wantHdr.Set(k, v)
	}
	if got := standardHeaders(version, m, headerName(m)); !reflect.DeepEqual(got, wantHdr) {
		t.Errorf("standardHeaders(%s) = %v, mcp-go builds %v", body, got, wantHdr)
	}
}

// TestStandardHeadersAsMCPGo: the proxy reads a 2026-07-28 request's
// Mcp-Method and Mcp-Name from the decoded message, without decoding its
// params again, and must still accept, refuse and forward exactly what
// mcp-go's reading (encoding/json: keys in any case) does.
func TestStandardHeadersAsMCPGo(t *testing.T) {
	const v = versionStateless
	call := func(params string) string {
		return `{"jsonrpc":"2.0","id":1,"method":"tools/call","params":` + params + `}`
	}
	for _, tc := range []struct {
		version, body, method, name string
	}{
		{v, call(`{"name":"fetch_url","arguments":{}}`), "tools/call", "fetch_url"},
		{v, call(`{"name":"fetch_url"}`), "tools/call", "other"},
		{v, call(`{"name":"fetch_url"}`), "tools/call", ""},
		{v, call(`{"name":"fetch_url"}`), "", "fetch_url"},
		{v, call(`{"name":"fetch_url"}`), "tools/list", "fetch_url"},
		{v, call(`{"Name":"fetch_url"}`), "tools/call", "fetch_url"},
		{v, call(`{"nameſ":"x"}`), "tools/call", "x"},
		{v, call(`{"name":7}`), "tools/call", "7"},
		{v, call(`{"name":null}`), "tools/call", "x"},
		{v, call(`{}`), "tools/call", "x"},
		{v, call(`{"name":"wetter \u00fcber \"M\\u00fcnchen\""}`), "tools/call", "wetter über \"München\""},
		{v, call(`{"name":"wetter \u00fcber"}`), "tools/call", "=?base64?d2V0dGVyIMO8YmVy?="},
		{v, call(`{"name":"a"}`), "tools/call", "=?base64?!!?="},
		{v, call(`{"name":""}`), "tools/call", "=?base64??="},
		{v, call(`{"name":" padded "}`), "tools/call", " padded "},
		{v, call(`{"name":"=?base64?eA==?="}`), "tools/call", "=?base64?eA==?="},
		{v, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"file:///a"}}`, "resources/read", "file:///a"},
		{v, `{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"name":"file:///a"}}`, "resources/read", "file:///a"},
		{v, `{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"p"}}`, "prompts/get", "p"},
		{v, `{"jsonrpc":"2.0","id":1,"method":"tools/list"}`, "tools/list", ""},
		{v, `{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":1}}`, "notifications/cancelled", ""},
		{v, `{"jsonrpc":"2.0","id":1,"result":{}}`, "", ""},
		{"2026-07-28x", call(`{"name":"a"}`), "tools/call", "a"},
		{"2027-01-01", call(`{"name":"a"}`), "tools/call", "b"},
		{"2025-11-25", call(`{"name":"a"}`), "", ""},
		{"", call(`{"name":"a"}`), "", ""},
	} {
		t.Run(tc.body+"/"+tc.method+"/"+tc.name, func(t *testing.T) {
			checkStandardHeaders(t, tc.version, tc.body, tc.method, tc.name)
		})
	}
}

// FuzzStandardHeaders holds the proxy's reading of Mcp-Method and Mcp-Name
// to mcp-go's on any body the codec accepts.
func FuzzStandardHeaders(f *testing.F) {
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"fetch_url"}}`, "tools/call", "fetch_url")
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"Name":"a","nAme":"b"}}`, "tools/call", "b")
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"resources/read","params":{"uri":"\u00e9\ud800"}}`, "resources/read", "=?base64?w6k=?=")
	f.Add(`{"jsonrpc":"2.0","id":1,"method":"prompts/get","params":{"name":"\u0000"}}`, "prompts/get", "\x00")
	f.Fuzz(func(t *testing.T, body, method, name string) {
		checkStandardHeaders(t, versionStateless, body, method, name)
	})
}

// TestLocalIsLoopback: the listener's address is judged without formatting
// it, as isLoopback judges its string form.
func TestLocalIsLoopback(t *testing.T) {
	for _, a := range []net.Addr{
		&net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 8081},
		&net.TCPAddr{IP: net.ParseIP("127.3.2.1").To4(), Port: 1},
		&net.TCPAddr{IP: net.IPv6loopback, Port: 8081},
		&net.TCPAddr{IP: net.ParseIP("::ffff:127.0.0.1"), Port: 8081},
		&net.TCPAddr{IP: net.IPv4(10, 0, 0, 1), Port: 8081},
		&net.TCPAddr{IP: net.IPv4zero, Port: 8081},
		&net.TCPAddr{IP: net.ParseIP("fe80::1"), Zone: "eth0", Port: 8081},
		&net.TCPAddr{Port: 8081},
		&net.UnixAddr{Name: "/run/mcpguard.sock", Net: "unix"},
	} {
		if got, want := localIsLoopback(a), isLoopback(a.String()); got != want {
			t.Errorf("localIsLoopback(%v) = %v, isLoopback(%q) = %v", a, got, a.String(), want)
		}
	}
}

// TestBindingsFollowTheListing: a tool's Mcp-Param-* bindings are read once
// per listed definition, and read again when a listing replaces it.
func TestBindingsFollowTheListing(t *testing.T) {
	pm := &pump{}
	def := func(schema string) json.RawMessage {
		return json.RawMessage(`{"name":"forecast","inputSchema":{"type":"object","properties":` + schema + `}}`)
	}
	current := func() *paramBindings {
		t, _ := pm.tools.Load("forecast")
		return t.(*listedTool).bindings()
	}
	pm.rememberTool("forecast", def(`{"region":{"type":"string","x-mcp-header":"Region"}}`))
	first := current()
	if !first.bound["Mcp-Param-Region"] || len(first.bound) != 1 || first.err != nil {
		t.Fatalf("bindings of the first listing: %+v", first)
	}
	if again := current(); again != first {
		t.Error("the same definition was read again")
	}
	pm.rememberTool("forecast", def(`{"region":{"type":"string"}}`))
	if b := current(); len(b.bound) != 0 || b.err != nil {
		t.Errorf("bindings after a listing without x-mcp-header: %+v", b)
	}
	pm.rememberTool("forecast", json.RawMessage(`{"name":"forecast","inputSchema":7}`))
	if b := current(); b.err == nil {
		t.Errorf("an unreadable definition read as %+v", b)
	}
}

// TestReadAll: a body reads whole whatever its declared length says of it
// and however its reader splits it, a declared one into a buffer of its
// own, and a reader's error comes back with what was read before it.
func TestReadAll(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name    string
		body    string
		hint    int64
		chunk   int // the reader's largest read; 0: all at once
		err     error
		wantOwn bool
	}{
		{"declared", `{"a":1}`, 7, 0, nil, true},
		{"declared, read a byte at a time", `{"a":1}`, 7, 1, nil, true},
		{"declared too short", `{"a":1}`, 3, 0, nil, true},
		{"declared too long", `{"a":1}`, 100, 0, nil, true},
		{"unknown length", `{"a":1}`, 0, 0, nil, false},
		{"unknown length, past the pooled buffer", big, 0, 1000, nil, false},
		{"declared, large", big, int64(len(big)), 4096, nil, true},
		{"declared beyond the limit", `{"a":1}`, 1 << 30, 0, nil, false},
		{"error after some", `{"a":`, 0, 2, boom, false},
		{"empty", ``, 0, 0, nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var r io.Reader = strings.NewReader(tc.body)
			if tc.chunk > 0 {
				r = &chunkedReader{r: r, max: tc.chunk}
			}
			if tc.err != nil {
				r = io.MultiReader(r, iotest.ErrReader(tc.err))
			}
			got, own, err := readAll(r, tc.hint, 1<<20)
			if string(got) != tc.body || own != tc.wantOwn || err != tc.err {
				t.Fatalf("readAll = %d bytes (want %d), own %v (want %v), err %v (want %v)", len(got), len(tc.body), own, tc.wantOwn, err, tc.err)
			}
		})
	}
}

// TestReadAllBounded: readAll takes at most limit+1 bytes from its reader,
// as io.LimitReader(r, limit+1) did before it, whatever the declared length
// and however the reader splits the body: one byte more than limit says the
// body is too large, and a body that never ends is not read on.
func TestReadAllBounded(t *testing.T) {
	const limit = 100
	for _, tc := range []struct {
		name  string
		size  int
		hint  int64
		chunk int
	}{
		{"within, declared", limit, limit, 0},
		{"within, unknown length", limit, 0, 0},
		{"one over, declared", limit + 1, limit + 1, 0},
		{"far over, declared too short", 10 * limit, 10, 0},
		{"far over, unknown length", 100 * limit, 0, 0},
		{"far over, a byte at a time", 10 * limit, 0, 1},
		{"far over, larger than the pooled buffer", 2 * minPooledBody, 0, 7},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := strings.NewReader(strings.Repeat("x", tc.size))
			var r io.Reader = body
			if tc.chunk > 0 {
				r = &chunkedReader{r: r, max: tc.chunk}
			}
			got, _, err := readAll(r, tc.hint, limit)
			want := min(tc.size, limit+1)
			if err != nil || len(got) != want {
				t.Fatalf("readAll = %d bytes, %v; want %d bytes", len(got), err, want)
			}
			if read := tc.size - body.Len(); read != want {
				t.Errorf("readAll read %d bytes of its reader; want %d", read, want)
			}
		})
	}
}

// chunkedReader reads at most max bytes at a time.
type chunkedReader struct {
	r   io.Reader
	max int
}

func (c *chunkedReader) Read(b []byte) (int, error) { return c.r.Read(b[:min(len(b), c.max)]) }

// TestDecodeBodyKeepsNoPooledBuffer: a buffer decodeBody hands back to
// bodyBufs is the next body's, read for another session: no message may
// point into it. Each body is decoded, its buffer then overwritten as the
// next body read into it would, and every message must encode as before.
func TestDecodeBodyKeepsNoPooledBuffer(t *testing.T) {
	lim := jsonrpc.Limits{MaxBytes: 1 << 20, MaxDepth: 64}
	for _, tc := range []struct {
		name string
		body string
		own  bool
	}{
		// Unknown length (a chunked answer): always pooled.
		{"small answer", `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"session A's secret"}]}}`, false},
		{"large answer", `{"jsonrpc":"2.0","id":1,"result":{"content":[{"type":"text","text":"` + strings.Repeat("A", 8<<10) + `"}]}}`, false},
		// A declared length not decoded in place (whitespace): pooled when large.
		{"declared, not canonical", `{ "jsonrpc": "2.0", "id": 1, "result": {"text": "` + strings.Repeat("A", 8<<10) + `"} }`, true},
		// A declared length decoded in place: kept by the messages, never pooled.
		{"declared, canonical", `{"jsonrpc":"2.0","id":1,"result":{"text":"` + strings.Repeat("A", 8<<10) + `"}}`, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := append(make([]byte, 0, max(len(tc.body), minPooledBody)), tc.body...)
			msgs, _, err := decodeBody(data, tc.own, lim)
			if err != nil {
				t.Fatal(err)
			}
			var before []string
			for _, m := range msgs {
				b, err := jsonrpc.Encode(m)
				if err != nil {
					t.Fatal(err)
				}
				before = append(before, string(b))
			}
			// What the pool holds now is reused: overwrite every buffer
			// it gives out, whatever decodeBody did with data.
			for range 4 {
				b := bodyBufs.Get().(*[]byte)
				buf := (*b)[:cap(*b)]
				for i := range buf {
					buf[i] = 'Z'
				}
				bodyBufs.Put(b)
			}
			// A buffer of unknown length is the pool's whether or not it
			// came back to it (one decoded in place is the messages' own).
			if !tc.own {
				full := data[:cap(data)]
				for i := range full {
					full[i] = 'Z'
				}
			}
			for i, m := range msgs {
				b, err := jsonrpc.Encode(m)
				if err != nil {
					t.Fatal(err)
				}
				if string(b) != before[i] {
					t.Fatalf("message %d changed once its buffer was reused:\n%.120s\nwas\n%.120s", i, b, before[i])
				}
			}
		})
	}
}

// TestHeaderKeysCanonical holds the keys the proxy reads with header, and
// forwardedHeaders, to their canonical form: a key in another form would
// never match what net/http stored, and the header would read as absent.
func TestHeaderKeysCanonical(t *testing.T) {
	keys := slices.Clone(forwardedHeaders)
	keys = append(keys, mcp.HeaderMethod, mcp.HeaderName)
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	call := regexp.MustCompile(`header\([^,()]+, "([^"]*)"\)`)
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		src, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range call.FindAllSubmatch(src, -1) {
			keys = append(keys, string(m[1]))
		}
	}
	if len(keys) < 15 {
		t.Fatalf("found only %d keys read with header: is the pattern out of date?", len(keys))
	}
	for _, k := range keys {
		if c := textproto.CanonicalMIMEHeaderKey(k); c != k {
			t.Errorf("header key %q is not canonical: write %q", k, c)
		}
	}
}
