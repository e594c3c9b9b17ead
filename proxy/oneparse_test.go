package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// recordingPolicy allows every call and keeps what it was asked about.
type recordingPolicy struct {
	mu  sync.Mutex
	ins []rules.Input
}

func (rp *recordingPolicy) Decide(_ context.Context, in rules.Input) rules.Decision {
	rp.mu.Lock()
	defer rp.mu.Unlock()
	in.Arguments = bytes.Clone(in.Arguments)
	rp.ins = append(rp.ins, in)
	return rules.Decision{Allow: true, Rule: "allow", Mode: rules.Enforce}
}

// TestPolicyReadsForwardedBytes: the arguments the policy is handed are
// the codec's canonical bytes, marked so (Input.Canonical), and exactly
// the bytes the gateway receives as params.arguments, however the agent
// wrote them (issue #13 item 5): the policy reads what is forwarded by
// construction, not by a second parser agreeing with the first.
func TestPolicyReadsForwardedBytes(t *testing.T) {
	up := newMCPGoUpstream(t)
	target, _ := url.Parse(up.URL)
	var mu sync.Mutex
	var forwarded [][]byte
	rp := httputil.NewSingleHostReverseProxy(target)
	gw := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		forwarded = append(forwarded, body)
		mu.Unlock()
		r.Body = io.NopCloser(bytes.NewReader(body))
		rp.ServeHTTP(w, r)
	}))
	pol := &recordingPolicy{}
	_, px := newTestProxy(t, gw.URL+"/mcp", func(c *Config) { c.Policy = pol })
	endpoint := px.URL + "/mcp"

	status, hdr, _ := rawPost(t, endpoint, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`), nil)
	if status != 200 {
		t.Fatalf("initialize: %d", status)
	}
	withSession := map[string]string{"Mcp-Session-Id": hdr.Get("Mcp-Session-Id"), "Mcp-Protocol-Version": "2025-06-18"}
	const sent = `{ "jsonrpc" : "2.0", "id" : 2, "method" : "tools/call", "params" : { "name" : "echo",
		"arguments" : { "message" : "caf\u00e9 \/ \"q\"\n\u0041", "n" : 1.50e0, "list" : [ true , null ] } } }`
	if status, _, body := rawPost(t, endpoint, []byte(sent), withSession); status != 200 {
		t.Fatalf("tools/call: %d %v", status, body)
	}

	var decided *rules.Input
	for i := range pol.ins {
		if pol.ins[i].Method == "tools/call" {
			decided = &pol.ins[i]
		}
	}
	if decided == nil {
		t.Fatal("the policy was not asked about the call")
	}
	if !decided.Canonical {
		t.Error("the call's Input is not marked Canonical: the policy would decode the arguments again")
	}
	const want = `{"message":"café / \"q\"\nA","n":1.50e0,"list":[true,null]}`
	if string(decided.Arguments) != want {
		t.Errorf("the policy read the arguments as %s, want the canonical %s", decided.Arguments, want)
	}
	var gotCall bool
	for _, body := range forwarded {
		m, err := jsonrpc.DecodeOne(body, jsonrpc.Limits{})
		if err != nil || m.Method != "tools/call" {
			continue
		}
		gotCall = true
		args, err := jsonrpc.Lookup(m.Params, "arguments")
		if err != nil || !bytes.Equal(args, decided.Arguments) {
			t.Errorf("the gateway received the arguments %s (%v); the policy read %s", args, err, decided.Arguments)
		}
		if !bytes.Contains(body, decided.Arguments) {
			t.Errorf("the bytes the policy read are not in what the gateway received:\n%s", body)
		}
	}
	if !gotCall {
		t.Fatalf("the gateway received no tools/call; it received %d bodies", len(forwarded))
	}
}

// TestPolicySeesTheCredentialsSubject: a call's Input.Identity.Subject is
// the hash of the agent's credential (subjectOf), with or without one. In
// a session it is read from the session, which answers only to that
// credential, rather than hashed again per decision.
func TestPolicySeesTheCredentialsSubject(t *testing.T) {
	up := newMCPGoUpstream(t)
	for _, tc := range []struct{ name, auth string }{
		{"no credential", ""},
		{"bearer token", "Bearer " + strings.Repeat("t0ken.", 100)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pol := &recordingPolicy{}
			_, px := newTestProxy(t, up.URL+"/mcp", func(c *Config) { c.Policy = pol })
			endpoint := px.URL + "/mcp"
			h := map[string]string{}
			if tc.auth != "" {
				h["Authorization"] = tc.auth
			}
			status, hdr, _ := rawPost(t, endpoint, []byte(`{"jsonrpc":"2.0","id":1,"method":"initialize","params":{"protocolVersion":"2025-06-18","capabilities":{},"clientInfo":{"name":"raw","version":"1"}}}`), h)
			if status != 200 {
				t.Fatalf("initialize: %d", status)
			}
			h["Mcp-Session-Id"], h["Mcp-Protocol-Version"] = hdr.Get("Mcp-Session-Id"), "2025-06-18"
			if status, _, body := rawPost(t, endpoint, []byte(`{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hi"}}}`), h); status != 200 {
				t.Fatalf("tools/call: %d %v", status, body)
			}
			r := httptest.NewRequest(http.MethodPost, endpoint, nil)
			if tc.auth != "" {
				r.Header.Set("Authorization", tc.auth)
			}
			want := subjectOf(r)
			if tc.auth != "" && want == "" {
				t.Fatal("subjectOf gave a credential no subject")
			}
			var calls int
			for _, in := range pol.ins {
				if in.Method == "tools/call" {
					calls++
					if in.Identity.Subject != want {
						t.Errorf("the policy saw subject %q, want %q", in.Identity.Subject, want)
					}
				}
			}
			if calls != 1 {
				t.Fatalf("the policy was asked about %d calls, want 1", calls)
			}
		})
	}
}
