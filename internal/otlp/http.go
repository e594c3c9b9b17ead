package otlp

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

const userAgent = "mcpguard OTLP exporter"

// newHTTPSender posts requests to cfg.target as OTLP/HTTP binary protobuf.
// It returns the send function and one that closes idle connections.
func newHTTPSender(cfg *config) (func(context.Context, []byte) ([]byte, error), func()) {
	tr := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: 30 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		ForceAttemptHTTP2:     true,
		MaxIdleConns:          10,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   10 * time.Second,
		ExpectContinueTimeout: time.Second,
		TLSClientConfig:       cfg.tls,
	}
	hc := &http.Client{Transport: tr}
	target := cfg.target.String()
	header := http.Header{}
	for k, v := range cfg.headers {
		header.Set(k, v)
	}
	header.Set("User-Agent", userAgent)
	header.Set("Content-Type", "application/x-protobuf")
	if cfg.gzip {
		header.Set("Content-Encoding", "gzip")
	}
	send := func(ctx context.Context, body []byte) ([]byte, error) {
		// The transport may go on reading a request's body after Do
		// returned (an early answer; its Close can come from another
		// goroutine), and body is a pooled buffer the next export
		// reuses: the request gets its own copy.
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(bytes.Clone(body)))
		if err != nil {
			return nil, err
		}
		req.Header = header.Clone()
		resp, err := hc.Do(req)
		if err != nil {
			// Only what net/http deems temporary is retried, as the
			// official exporter does; a refused connection is not.
			var ue *url.Error
			if errors.As(err, &ue) && ue.Temporary() {
				return nil, &retryable{err: err}
			}
			return nil, err
		}
		defer resp.Body.Close()
		data, err := readLimited(resp.Body, maxResponseBytes)
		if err != nil {
			return nil, fmt.Errorf("reading the answer of %s: %w", target, err)
		}
		switch {
		case resp.StatusCode >= 200 && resp.StatusCode <= 299:
			if ct, _, _ := strings.Cut(resp.Header.Get("Content-Type"), ";"); strings.TrimSpace(ct) != "application/x-protobuf" {
				return nil, nil
			}
			return data, nil
		case resp.StatusCode == http.StatusTooManyRequests, resp.StatusCode == http.StatusBadGateway,
			resp.StatusCode == http.StatusServiceUnavailable, resp.StatusCode == http.StatusGatewayTimeout:
			return nil, &retryable{err: statusError(target, resp, data), throttle: retryAfter(resp.Header.Get("Retry-After"))}
		}
		return nil, statusError(target, resp, data)
	}
	return send, tr.CloseIdleConnections
}

func statusError(target string, resp *http.Response, body []byte) error {
	s := strings.TrimSpace(string(body))
	if s == "" {
		s = "(empty)"
	}
	if len(s) > 512 {
		s = s[:512] + "…"
	}
	return fmt.Errorf("failed to send to %s: %s (body: %s)", target, resp.Status, s)
}

// retryAfter reads a Retry-After header: seconds or an HTTP date.
func retryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil && s >= 0 {
		return durationOf(s, 0)
	}
	if t, err := http.ParseTime(v); err == nil {
		return max(time.Until(t), 0)
	}
	return 0
}

// readLimited reads r to its end, failing beyond limit bytes.
func readLimited(r io.Reader, limit int64) ([]byte, error) {
	data, err := io.ReadAll(io.LimitReader(r, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("answer larger than %d bytes", limit)
	}
	return data, nil
}
