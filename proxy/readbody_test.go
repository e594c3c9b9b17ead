package proxy

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// TestReadBodyLimit: an agent's body of exactly MaxBodyBytes is read and
// one byte more is refused with 413, whether its length is declared, is
// not (chunked), or it comes gzip or deflate compressed; a compressed body
// is bounded as sent as well as once decompressed.
func TestReadBodyLimit(t *testing.T) {
	const limit = 8 << 10
	p, _ := newTestProxy(t, "http://127.0.0.1:1/mcp", func(c *Config) { c.MaxBodyBytes = limit })
	body := func(n int) []byte { return []byte(strings.Repeat("x", n)) }
	gz := func(b []byte) []byte {
		var out bytes.Buffer
		w := gzip.NewWriter(&out)
		_, _ = w.Write(b)
		_ = w.Close()
		return out.Bytes()
	}
	zl := func(b []byte) []byte {
		var out bytes.Buffer
		w := zlib.NewWriter(&out)
		_, _ = w.Write(b)
		_ = w.Close()
		return out.Bytes()
	}
	noise := make([]byte, limit) // incompressible: within limit decompressed, over it as sent
	_, _ = rand.Read(noise)
	for _, tc := range []struct {
		name     string
		sent     []byte
		encoding string
		chunked  bool
		wantLen  int // 0: refused with 413
	}{
		{"identity, at the limit", body(limit), "", false, limit},
		{"identity, one over", body(limit + 1), "", false, 0},
		{"chunked, at the limit", body(limit), "", true, limit},
		{"chunked, one over", body(limit + 1), "", true, 0},
		{"chunked, far over", body(100 * limit), "", true, 0},
		{"gzip, at the limit", gz(body(limit)), "gzip", true, limit},
		{"gzip, one over", gz(body(limit + 1)), "gzip", true, 0},
		{"gzip bomb", gz(body(1000 * limit)), "gzip", false, 0},
		{"gzip, over as sent", gz(noise), "gzip", false, 0},
		{"deflate, at the limit", zl(body(limit)), "deflate", false, limit},
		{"deflate, one over", zl(body(limit + 1)), "deflate", false, 0},
		{"deflate bomb", zl(body(1000 * limit)), "deflate", true, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodPost, "/mcp", bytes.NewReader(tc.sent))
			r.Header.Set("Content-Type", "application/json")
			if tc.encoding != "" {
				r.Header.Set("Content-Encoding", tc.encoding)
			}
			if tc.chunked {
				r.ContentLength = -1
				r.Body = io.NopCloser(bytes.NewReader(tc.sent)) // no length to trust
			}
			data, _, cerr := p.readBody(httptest.NewRecorder(), r)
			switch {
			case tc.wantLen == 0 && (cerr == nil || cerr.status != http.StatusRequestEntityTooLarge):
				t.Fatalf("read %d bytes, %v; want 413", len(data), cerr)
			case tc.wantLen > 0 && (cerr != nil || len(data) != tc.wantLen):
				t.Fatalf("read %d bytes, %v; want %d", len(data), cerr, tc.wantLen)
			}
		})
	}
}
