package promtext

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
)

// ContentType is the text exposition format 0.0.4, the only one served.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

var _ http.Handler = (*Exporter)(nil)

// buffers keeps an exposition's text between scrapes.
var buffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// gzipWriters keeps a compressor between scrapes: each is ~1 MiB to build.
var gzipWriters = sync.Pool{New: func() any {
	w, _ := gzip.NewWriterLevel(io.Discard, gzip.BestSpeed)
	return w
}}

// ServeHTTP answers GET and HEAD with one exposition, gzipped when the
// scraper accepts gzip; any other method is 405. A scrape that could read
// only part of the SDK still answers 200 with that part, as the otel
// exporter did.
func (e *Exporter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	h := w.Header()
	h.Set("Content-Type", ContentType)
	h.Add("Vary", "Accept-Encoding")
	gzipped := acceptsGzip(r.Header.Get("Accept-Encoding"))
	if gzipped {
		h.Set("Content-Encoding", "gzip")
	}
	if r.Method == http.MethodHead {
		return
	}
	b := buffers.Get().(*bytes.Buffer)
	defer buffers.Put(b)
	b.Reset()
	_ = e.render(r.Context(), b)
	if !gzipped {
		_, _ = w.Write(b.Bytes())
		return
	}
	gz := gzipWriters.Get().(*gzip.Writer)
	defer gzipWriters.Put(gz)
	gz.Reset(w)
	_, _ = gz.Write(b.Bytes())
	_ = gz.Close()
	gz.Reset(io.Discard) // keep no reference to a finished response
}

// acceptsGzip reports whether an Accept-Encoding names gzip with a
// non-zero quality.
func acceptsGzip(ae string) bool {
	for part := range strings.SplitSeq(ae, ",") {
		coding, params, _ := strings.Cut(part, ";")
		if !strings.EqualFold(strings.TrimSpace(coding), "gzip") {
			continue
		}
		q := strings.ReplaceAll(params, " ", "")
		return q != "q=0" && q != "q=0.0" && q != "q=0.00" && q != "q=0.000"
	}
	return false
}
