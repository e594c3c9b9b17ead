package decisionlog

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"mcpguard.dev/mcpguard/rules"
)

func TestWriteAndRead(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf)
	at := time.Date(2026, 11, 27, 6, 0, 0, 123, time.UTC)
	w.Log(&Record{Time: at, Method: "tools/call", Tool: "fetch_url", Session: "s1", ProtocolVersion: "2025-06-18",
		Identity: rules.Identity{Namespace: "agents", Pod: "a-1"}, Decision: "deny", Rule: "fetch_url/approved-hosts",
		Reason: "host not approved", Mode: "enforce", Blocked: true, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736",
		SpanID: "00f067aa0ba902b7", DurationUS: 7})
	want := `{"time":"2026-11-27T06:00:00.000000123Z","method":"tools/call","tool":"fetch_url","session":"s1","protocolVersion":"2025-06-18","identity":{"namespace":"agents","pod":"a-1"},"decision":"deny","rule":"fetch_url/approved-hosts","reason":"host not approved","mode":"enforce","blocked":true,"traceId":"4bf92f3577b34da6a3ce929d0e0e4736","spanId":"00f067aa0ba902b7","durationUs":7,"seq":1,"prev":"sha256:0000000000000000000000000000000000000000000000000000000000000000"}` + "\n"
	if buf.String() != want {
		t.Errorf("line\n got %s\nwant %s", buf.String(), want)
	}
	var got []*Record
	for rec, err := range Read(strings.NewReader(buf.String())) {
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, rec)
	}
	if len(got) != 1 || got[0].Input().Identity.Pod != "a-1" || got[0].Outcome().Rule != "fetch_url/approved-hosts" || got[0].Outcome().Allow {
		t.Errorf("read back %+v", got)
	}
	// A line decodes as the rules.Input it was decided on.
	var in rules.Input
	if err := json.Unmarshal(buf.Bytes(), &in); err != nil || in.Tool != "fetch_url" || in.Session != "s1" || in.ProtocolVersion != "2025-06-18" {
		t.Errorf("as rules.Input: %+v %v", in, err)
	}
}

func TestReadReportsBadLines(t *testing.T) {
	log := `{"time":"2026-11-27T06:00:00Z","method":"tools/call","tool":"a","decision":"allow","rule":"a"}

not json
{"msg":"listening"}
{"time":"2026-11-27T06:00:01Z","method":"tools/call","tool":"b","decision":"deny","rule":"default"}
`
	var tools, errs []string
	for rec, err := range Read(strings.NewReader(log)) {
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		tools = append(tools, rec.Tool)
	}
	if strings.Join(tools, ",") != "a,b" {
		t.Errorf("records %v", tools)
	}
	if len(errs) != 2 || !strings.HasPrefix(errs[0], "line 3: ") || errs[1] != `line 4: not a decision record (method "", decision "")` {
		t.Errorf("errors %q", errs)
	}
}

func TestConcurrentLinesStayWhole(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.jsonl")
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				w.Log(&Record{Method: "tools/call", Tool: fmt.Sprint("t", g, "-", i), Decision: "allow", Rule: strings.Repeat("r", 500)})
			}
		})
	}
	wg.Wait()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	data, _ := os.ReadFile(path)
	n := 0
	for _, err := range Read(bytes.NewReader(data)) {
		if err != nil {
			t.Fatal(err)
		}
		n++
	}
	if n != 1600 {
		t.Errorf("%d records, want 1600", n)
	}
	var nilW *Writer
	nilW.Log(&Record{}) // a nil Writer discards
	if err := nilW.Close(); err != nil {
		t.Error(err)
	}
}

type failing struct{}

func (failing) Write([]byte) (int, error) { return 0, os.ErrClosed }

func TestWriteErrorReportedOnClose(t *testing.T) {
	w := NewWriter(failing{})
	w.Log(&Record{Method: "tools/call", Decision: "allow"})
	if err := w.Close(); err == nil {
		t.Error("a failed write went unreported")
	}
}

// A Writer from Open batches: a record is in the file within FlushInterval,
// not at once, and all of them at Close.
func TestOpenBatches(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "d.jsonl")
		w, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		lines := func() int {
			data, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			return bytes.Count(data, []byte("\n"))
		}
		w.Log(&Record{Method: "tools/call", Tool: "a", Decision: "allow", Rule: "a"})
		w.Log(&Record{Method: "tools/call", Tool: "b", Decision: "deny", Rule: "default"})
		synctest.Wait()
		if n := lines(); n != 0 {
			t.Fatalf("%d lines written at once, want them batched", n)
		}
		time.Sleep(FlushInterval)
		synctest.Wait()
		if n := lines(); n != 2 {
			t.Fatalf("%d lines after FlushInterval, want 2", n)
		}
		w.Log(&Record{Method: "tools/call", Tool: "c", Decision: "allow", Rule: "c"})
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
		if n := lines(); n != 3 {
			t.Fatalf("%d lines after Close, want 3", n)
		}
	})
}
