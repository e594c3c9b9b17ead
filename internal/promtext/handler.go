package promtext

import (
	"compress/gzip"
	"io"
	"net/http"
	"strings"
	"sync"
)

// ContentType is the text exposition format 0.0.4, the only one served.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

var _ http.Handler = (*Exporter)(nil)

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
	var out io.Writer = w
	if gzipped {
		gz := gzipWriters.Get().(*gzip.Writer)
		gz.Reset(w)
		defer func() {
			gz.Close()
			gz.Reset(io.Discard)
			gzipWriters.Put(gz)
		}()
		out = gz
	}
	_ = e.write(r.Context(), out)
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
