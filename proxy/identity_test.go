package proxy

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	mcpserver "github.com/mark3labs/mcp-go/server"
)

// TestPolicySubjectIsTheCallers: with two agents holding sessions at once
// and a third naming theirs, every tools/call the policy is asked about
// carries the subject of the credential of the request that sent it, in a
// Streamable HTTP session, a legacy HTTP+SSE session and the stateless era;
// a request naming a session with another credential, or none, is refused
// before the policy sees it (the subject is read from the session, which
// must answer only to the credential that created it).
func TestPolicySubjectIsTheCallers(t *testing.T) {
	creds := map[string]string{"alice": "Bearer alice", "bob": "Bearer bob", "anon": ""}
	subject := func(auth string) string {
		r := httptest.NewRequest(http.MethodPost, "/mcp", nil)
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		return subjectOf(r)
	}
	call := func(tag string) string {
		return `{"jsonrpc":"2.0","id":7,"method":"tools/call","params":{"name":"echo","arguments":{"message":"` + tag + `"}}}`
	}
	// check: each tools/call the policy saw came from the agent its
	// message names (tag "who/n"), and exactly want of them.
	check := func(t *testing.T, pol *recordingPolicy, want int) {
		t.Helper()
		pol.mu.Lock()
		defer pol.mu.Unlock()
		n := 0
		for _, in := range pol.ins {
			if in.Method != "tools/call" {
				continue
			}
			n++
			msg := string(in.Arguments)
			who := msg[strings.Index(msg, `"message":"`)+len(`"message":"`):]
			who = who[:strings.IndexByte(who, '/')]
			if want := subject(creds[who]); in.Identity.Subject != want {
				t.Errorf("%s: the policy saw subject %q, want %s's %q", msg, in.Identity.Subject, who, want)
			}
		}
		if n != want {
			t.Errorf("the policy was asked about %d calls, want %d", n, want)
		}
	}

	t.Run("streamable HTTP sessions", func(t *testing.T) {
		up := newMCPGoUpstream(t)
		pol := &recordingPolicy{}
		_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.Policy = pol })
		endpoint := px.URL + "/mcp"
		sids := map[string]string{}
		for _, who := range []string{"alice", "bob", "anon"} {
			status, hdr, _ := rawPost(t, endpoint, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`),
				map[string]string{"Authorization": creds[who]})
			if status != 200 {
				t.Fatalf("%s's initialize: %d", who, status)
			}
			sids[who] = hdr.Get("Mcp-Session-Id")
		}
		calls := 0
		for round := range 2 {
			for _, who := range []string{"alice", "bob", "anon"} {
				for _, as := range []string{"alice", "bob", "anon"} {
					h := map[string]string{"Authorization": creds[as], "Mcp-Session-Id": sids[who], "Mcp-Protocol-Version": "2025-06-18"}
					status, _, body := rawPost(t, endpoint, []byte(call(as+"/"+string(rune('0'+round)))), h)
					switch {
					case as == who && status != 200:
						t.Fatalf("%s in its own session: %d %v", as, status, body)
					case as != who && status != http.StatusForbidden:
						t.Errorf("%s in %s's session: %d, want 403", as, who, status)
					}
					if as == who {
						calls++
					}
				}
			}
		}
		check(t, pol, calls)
	})

	t.Run("legacy HTTP+SSE sessions", func(t *testing.T) {
		up := newMCPGoUpstream(t)
		pol := &recordingPolicy{}
		_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.Policy = pol })
		post := func(url, auth, body string) int {
			req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
			req.Header.Set("Content-Type", "application/json")
			if auth != "" {
				req.Header.Set("Authorization", auth)
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			res.Body.Close()
			return res.StatusCode
		}
		messages, streams := map[string]string{}, map[string]*agentStream{}
		for _, who := range []string{"alice", "bob", "anon"} {
			req, _ := http.NewRequest(http.MethodGet, px.URL+"/sse", nil)
			req.Header.Set("Accept", "text/event-stream")
			if creds[who] != "" {
				req.Header.Set("Authorization", creds[who])
			}
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			rd := newSSEReader(res.Body, 1<<20)
			ev, err := rd.next()
			if err != nil || ev.name != "endpoint" {
				res.Body.Close()
				t.Fatalf("legacy stream: %+v %v, want the endpoint event", ev, err)
			}
			streams[who], messages[who] = readStream(t, res, rd), px.URL+string(ev.data)
			if st := post(messages[who], creds[who], `{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2024-11-05","capabilities":{},"clientInfo":{"name":"legacy","version":"1"}}}`); st != http.StatusAccepted {
				t.Fatalf("%s's legacy initialize: %d", who, st)
			}
			if m := streams[who].next(t, "the initialize result"); m.Result == nil {
				t.Fatalf("legacy initialize: %s", describe(m))
			}
			if st := post(messages[who], creds[who], `{"jsonrpc":"2.0","method":"notifications/initialized"}`); st != http.StatusAccepted {
				t.Fatalf("%s's initialized: %d", who, st)
			}
		}
		for _, who := range []string{"alice", "bob", "anon"} {
			for _, as := range []string{"alice", "bob", "anon"} {
				st := post(messages[who], creds[as], call(as+"/0"))
				switch {
				case as == who && st != http.StatusAccepted:
					t.Fatalf("%s in its own legacy session: %d", as, st)
				case as != who && st != http.StatusForbidden:
					t.Errorf("%s in %s's legacy session: %d, want 403", as, who, st)
				}
			}
			if m := streams[who].next(t, "the tools/call result"); m.Result == nil {
				t.Fatalf("%s's legacy tools/call: %s", who, describe(m))
			}
		}
		check(t, pol, 3)
	})

	t.Run("stateless era", func(t *testing.T) {
		up := newMCPGoUpstream(t, mcpserver.WithStateLess(true))
		pol := &recordingPolicy{}
		_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.Policy = pol })
		for _, who := range []string{"alice", "bob", "anon", "alice"} {
			body := strings.Replace(call(who+"/0"), `}}}`, `},"_meta":{"io.modelcontextprotocol/protocolVersion":"2026-07-28","io.modelcontextprotocol/clientCapabilities":{}}}}`, 1)
			status, _, m := rawPost(t, px.URL+"/mcp", []byte(body), map[string]string{"Authorization": creds[who],
				"Mcp-Protocol-Version": "2026-07-28", "Mcp-Method": "tools/call", "Mcp-Name": "echo"})
			if status != 200 {
				t.Fatalf("%s's stateless call: %d %v", who, status, m)
			}
		}
		check(t, pol, 4)
	})
}
