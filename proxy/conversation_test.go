package proxy

import (
	"bytes"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"

	"golang.org/x/tools/txtar"
)

var update = flag.Bool("update", false, "rewrite the want sections of proxy/testdata/*.txtar")

// TestConversations replays proxy/testdata/*.txtar: whole conversations
// between an agent, the proxy and a scripted gateway. Each file's comment
// says what it pins. Sections:
//
//	client   one line per agent POST: the raw body (session headers are
//	         added from the last initialize; "accept-json " before the body
//	         sends Accept: application/json only)
//	gateway  one line per request the gateway receives, in order: "202",
//	         "json BODY" or "sse BODY ;; BODY ..." (an event stream)
//	want     the transcript, rewritten by -update
func TestConversations(t *testing.T) {
	files, err := filepath.Glob("testdata/*.txtar")
	if err != nil || len(files) == 0 {
		t.Fatalf("no conversations in testdata: %v", err)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".txtar"), func(t *testing.T) {
			ar, err := txtar.ParseFile(file)
			if err != nil {
				t.Fatal(err)
			}
			sections := map[string]string{}
			for _, f := range ar.Files {
				sections[f.Name] = string(f.Data)
			}
			got := converse(t, lines(sections["client"]), lines(sections["gateway"]))
			if *update {
				for i := range ar.Files {
					if ar.Files[i].Name == "want" {
						ar.Files[i].Data = []byte(got)
					}
				}
				if err := os.WriteFile(file, txtar.Format(ar), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			if want := sections["want"]; got != want {
				t.Errorf("transcript differs (run with -update to accept)\n--- got\n%s--- want\n%s", got, want)
			}
		})
	}
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		if strings.TrimSpace(l) != "" {
			out = append(out, l)
		}
	}
	return out
}

var sessionIDPattern = regexp.MustCompile(`[A-Za-z0-9_-]{43}`)

// converse runs one scripted conversation and returns its transcript.
func converse(t *testing.T, client, gateway []string) string {
	var mu sync.Mutex
	var transcript bytes.Buffer
	logf := func(format string, args ...any) {
		mu.Lock()
		fmt.Fprintf(&transcript, format, args...)
		mu.Unlock()
	}
	next := 0
	up := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		logf("  gateway< %s %s\n", r.Method, body)
		mu.Lock()
		if next >= len(gateway) {
			mu.Unlock()
			logf("  gateway! unscripted request\n")
			http.Error(w, "unscripted", http.StatusInternalServerError)
			return
		}
		reply := gateway[next]
		next++
		mu.Unlock()
		w.Header().Set("Mcp-Session-Id", "gw-1")
		switch {
		case reply == "202":
			w.WriteHeader(http.StatusAccepted)
		case strings.HasPrefix(reply, "json "):
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, strings.TrimPrefix(reply, "json "))
		case strings.HasPrefix(reply, "sse "):
			w.Header().Set("Content-Type", "text/event-stream")
			for _, ev := range strings.Split(strings.TrimPrefix(reply, "sse "), " ;; ") {
				fmt.Fprintf(w, "event: message\ndata: %s\n\n", ev)
			}
		default:
			t.Errorf("bad gateway line %q", reply)
		}
	}))
	_, px := newTestProxy(t, up.URL)
	hdr := map[string]string{}
	for _, line := range client {
		body := line
		h := map[string]string{}
		for k, v := range hdr {
			h[k] = v
		}
		if b, ok := strings.CutPrefix(line, "accept-json "); ok {
			body, h["Accept"] = b, "application/json"
		}
		logf("> POST %s\n", body)
		req, _ := http.NewRequest(http.MethodPost, px.URL+"/mcp", strings.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Accept", "application/json, text/event-stream")
		for k, v := range h {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if sid := resp.Header.Get("Mcp-Session-Id"); sid != "" {
			hdr["Mcp-Session-Id"] = sid
		}
		shown := strings.TrimSpace(string(data))
		if resp.Header.Get("Content-Type") == "text/event-stream" {
			shown = "sse " + strings.ReplaceAll(strings.TrimSpace(shown), "\n", "\\n")
		}
		logf("< %d %s\n", resp.StatusCode, shown)
	}
	mu.Lock()
	defer mu.Unlock()
	if next != len(gateway) {
		fmt.Fprintf(&transcript, "! %d gateway replies unused\n", len(gateway)-next)
	}
	return sessionIDPattern.ReplaceAllString(transcript.String(), "<session>")
}
