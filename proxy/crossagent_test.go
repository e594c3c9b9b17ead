package proxy

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestNothingCrossesAgents: many agents at once, each with its own
// credential, session and trace context, call through one proxy whose
// gateway requests and forward bodies are pooled (h1Calls, Pieces.Pooled),
// with bodies on each of the body paths (joined, pieces, larger than
// h1MaxBody) and some calls cancelled mid-flight. The gateway checks that
// every request carries only its own agent's Authorization, Traceparent and
// session, and that each body names that agent alone; each agent checks its
// answers name it alone.
func TestNothingCrossesAgents(t *testing.T) {
	up := newMCPGoUpstream(t)
	var mu sync.Mutex
	owner := map[string]string{} // the gateway's session id -> Authorization
	var bad []string
	fail := func(f string, a ...any) {
		mu.Lock()
		if len(bad) < 10 {
			bad = append(bad, fmt.Sprintf(f, a...))
		}
		mu.Unlock()
	}
	gw := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		r.Body = io.NopCloser(bytes.NewReader(body))
		auth := r.Header.Get("Authorization")
		agent := strings.TrimPrefix(auth, "Bearer ")
		if vs := r.Header.Values("Authorization"); len(vs) != 1 || agent == "" {
			fail("a %s reached the gateway with Authorization %q", r.Method, vs)
		}
		if tp, want := r.Header.Get("Traceparent"), tracedAgent(agent); tp != "" && !want || tp != "" && !strings.Contains(tp, traceOf(agent)) {
			fail("%s's %s carried traceparent %q", agent, r.Method, tp)
		}
		if lei := r.Header.Get("Last-Event-Id"); lei != "" {
			fail("%s's request carried Last-Event-Id %q", agent, lei)
		}
		if r.Method == http.MethodPost {
			for _, other := range markers(string(body)) {
				if other != agent {
					fail("%s's body carried %s's marker: %.200s", agent, other, body)
				}
			}
		}
		if sid := r.Header.Get("Mcp-Session-Id"); sid != "" {
			mu.Lock()
			o, ok := owner[sid]
			mu.Unlock()
			if ok && o != auth {
				fail("session %s of %q used with %q", sid, o, auth)
			}
		}
		up.Config.Handler.ServeHTTP(w, r)
		if sid := w.Header().Get("Mcp-Session-Id"); sid != "" && r.Header.Get("Mcp-Session-Id") == "" {
			mu.Lock()
			owner[sid] = auth
			mu.Unlock()
		}
	}))
	_, px := newTestProxy(t, gw.URL+"/mcp", func(c *Config) { c.ForwardAuthorization = true })

	const agents, calls = 8, 20
	var wg sync.WaitGroup
	for a := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			agent := fmt.Sprintf("agent%02d", a)
			hdr := map[string]string{"Authorization": "Bearer " + agent}
			if tracedAgent(agent) {
				hdr["Traceparent"] = "00-" + traceOf(agent) + "-00f067aa0ba902b7-01"
			}
			sid, err := initSession(px.URL+"/mcp", hdr)
			if err != nil {
				fail("%s: initialize: %v", agent, err)
				return
			}
			hdr["Mcp-Session-Id"] = sid
			hdr["Mcp-Protocol-Version"] = "2025-06-18"
			for i := range calls {
				size := []int{10, 3 << 10, 20 << 10, 40 << 10, 70 << 10}[i%5]
				msg := "<" + agent + ">" + strings.Repeat("x", size) + "<" + agent + ">"
				body := fmt.Sprintf(`{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"message":%q}}}`, i+1, msg)
				if i%3 == 2 {
					// Cancelled at some point of its way: before, during or
					// after the gateway call.
					ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i*37%900)*time.Microsecond)
					req, _ := http.NewRequestWithContext(ctx, http.MethodPost, px.URL+"/mcp", strings.NewReader(body))
					for k, v := range hdr {
						req.Header.Set(k, v)
					}
					req.Header.Set("Content-Type", "application/json")
					req.Header.Set("Accept", "application/json")
					if res, err := http.DefaultClient.Do(req); err == nil {
						data, _ := io.ReadAll(res.Body)
						res.Body.Close()
						for _, other := range markers(string(data)) {
							if other != agent {
								fail("%s got %s's answer", agent, other)
							}
						}
					}
					cancel()
					continue
				}
				status, m, err := tryPostJSON(px.URL+"/mcp", body, hdr)
				if err != nil || status != http.StatusOK || m == nil {
					fail("%s: call %d: %d %v", agent, i, status, err)
					continue
				}
				res := describe(m)
				if !strings.Contains(res, "<"+agent+">") {
					fail("%s: call %d answered without its marker: %.200s", agent, i, res)
				}
				for _, other := range markers(res) {
					if other != agent {
						fail("%s got %s's answer", agent, other)
					}
				}
			}
		}()
	}
	wg.Wait()
	for _, b := range bad {
		t.Error(b)
	}
}

// traceOf is an agent's trace id.
func traceOf(agent string) string {
	return fmt.Sprintf("%018d%014x", 0, agent)
}

// tracedAgent reports whether an agent sends a trace context: half do.
func tracedAgent(agent string) bool { return (agent[len(agent)-1]-'0')%2 == 0 }

// initSession initializes a session and returns its id.
func initSession(url string, hdr map[string]string) (string, error) {
	body := `{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"t","version":"1"}}}`
	req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, res.Body)
	sid := res.Header.Get("Mcp-Session-Id")
	if res.StatusCode != http.StatusOK || sid == "" {
		return "", fmt.Errorf("status %d, session %q", res.StatusCode, sid)
	}
	return sid, nil
}

// markers returns the agents named in s as <agentNN>.
func markers(s string) []string {
	var out []string
	for {
		i := strings.Index(s, "<agent")
		if i < 0 || len(s) < i+9 {
			return out
		}
		out = append(out, s[i+1:i+8])
		s = s[i+9:]
	}
}
