package proxy

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// writeRequest writes req to w as (*http.Request).Write does, byte for
// byte, for the requests h1Client sends itself: a body of known length or
// none, no trailers, no Transfer-Encoding (TestWriteRequestLikeNetHTTP
// holds the two to the same bytes). Request.Write serves every request a
// program can build, and on a small call its generality (an allocation per
// header line through a pooled sorter, fmt for the request line, a
// transfer writer) cost about 5 µs of a call's path here (issue #18); this
// appends into the connection's buffer. Like Request.Write it closes the
// body.
func writeRequest(w *bufio.Writer, req *http.Request) (err error) {
	noBody := req.Body == nil || req.Body == http.NoBody
	if len(req.TransferEncoding) > 0 || req.Trailer != nil || (noBody && req.ContentLength != 0) || (!noBody && req.ContentLength <= 0) {
		closeReqBody(req)
		return errors.New("h1Client: a request to write needs a body of known length or none, and no Transfer-Encoding or trailers")
	}
	if req.Close || req.Method == http.MethodConnect {
		// h1Client sends neither, and Request.Write frames both by rules
		// of their own (a CONNECT's authority form; Connection: close
		// unless the first Connection value has the token): it writes
		// them itself, the same bytes by construction.
		return req.Write(w)
	}
	defer closeReqBody(req)
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	if !httpguts.ValidHeaderFieldName(method) { // a method is a token, as a field name is
		return fmt.Errorf("net/http: invalid method %q", method)
	}
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if host, err = httpguts.PunycodeHostPort(host); err != nil {
		return err
	}
	if !httpguts.ValidHostHeader(host) {
		host = "" // as Request.Write does: an altered Host would be a smuggling vector
	}
	host = removeZone(host)
	ruri := req.URL.RequestURI()
	if strings.ContainsFunc(ruri, isCTL) {
		return errors.New("net/http: can't write control character in Request.URL")
	}

	length := req.ContentLength
	w.WriteString(method)
	w.WriteByte(' ')
	w.WriteString(ruri)
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(host)
	w.WriteString("\r\n")
	ua := "Go-http-client/1.1"
	if v, ok := req.Header["User-Agent"]; ok {
		ua = ""
		if len(v) > 0 {
			ua = v[0]
		}
	}
	if ua != "" { // before trimming, as Request.Write: a blank one is sent empty
		writeField(w, "User-Agent", trimValue(ua))
	}
	if length > 0 || method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch {
		w.WriteString("Content-Length: ")
		w.Write(strconv.AppendInt(w.AvailableBuffer(), length, 10))
		w.WriteString("\r\n")
	}
	var keysBuf [16]string
	keys := keysBuf[:0]
	for k := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
		default:
			// Request.Write drops a name that is not a token (validateOutgoing
			// refused the request already).
			if httpguts.ValidHeaderFieldName(k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		for _, v := range req.Header[k] {
			writeField(w, k, trimValue(v))
		}
	}
	if _, err := w.WriteString("\r\n"); err != nil {
		return err
	}
	if length == 0 {
		return nil
	}
	var n int64
	if b, ok := req.Body.(*callBody); ok && int64(b.Len()) == length {
		// upstream's bytes, written without a LimitReader per call.
		n, err = b.WriteTo(w)
	} else {
		n, err = io.Copy(w, io.LimitReader(req.Body, length))
	}
	if err != nil {
		return err
	}
	// Request.Write reads on to the body's end: a body longer than its
	// ContentLength is an error, not a truncation.
	extra, err := io.Copy(io.Discard, req.Body)
	if err != nil {
		return err
	}
	n += extra
	if n != length {
		return fmt.Errorf("http: ContentLength=%d with Body length %d", length, n)
	}
	return nil
}

func writeField(w *bufio.Writer, k, v string) {
	w.WriteString(k)
	w.WriteString(": ")
	w.WriteString(v)
	w.WriteString("\r\n")
}

// trimValue is what Request.Write does to a header value: line breaks
// become spaces (validateOutgoing refused them already), and the ends are
// trimmed of white space.
func trimValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\n", " ", "\r", " ").Replace(v)
	}
	return strings.Trim(v, " \t\n\r")
}

func isCTL(r rune) bool { return r < ' ' || r == 0x7f }

// removeZone removes an IPv6 zone from a Host ("[fe80::1%en0]:80"), as
// net/http does (RFC 6874: an intermediary must not send it on).
func removeZone(host string) string {
	if !strings.HasPrefix(host, "[") {
		return host
	}
	i := strings.LastIndex(host, "]")
	if i < 0 {
		return host
	}
	j := strings.LastIndex(host[:i], "%")
	if j < 0 {
		return host
	}
	return host[:j] + host[i:]
}
