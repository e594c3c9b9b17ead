package decisionlog

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func chainLines(t *testing.T, n int) []string {
	t.Helper()
	var buf bytes.Buffer
	w := NewWriter(&buf)
	for i := range n {
		w.Log(&Record{Time: time.Unix(int64(i), 0).UTC(), Method: "tools/call", Tool: "fetch_url", Decision: "deny", Rule: "fetch_url/approved-hosts", Reason: "argument /url: host is not in the approved list", Blocked: true})
	}
	lines := strings.SplitAfter(buf.String(), "\n")
	return lines[:len(lines)-1]
}

func TestVerify(t *testing.T) {
	lines := chainLines(t, 5)
	join := func(ls ...string) string { return strings.Join(ls, "") }
	edited := strings.Replace(lines[2], `"decision":"deny"`, `"decision":"allow"`, 1)
	for _, tc := range []struct {
		name, log   string
		line        int
		kind        string
		wantRecords int
	}{
		{"intact", join(lines...), 0, "", 5},
		{"empty", "", 0, "", 0},
		{"edited", join(lines[0], lines[1], edited, lines[3], lines[4]), 3, "edited", 0},
		{"edited reason, spacing only", join(lines[0], strings.Replace(lines[1], `"rule":`, `"rule": `, 1), lines[2], lines[3], lines[4]), 2, "edited", 0},
		{"deleted", join(lines[0], lines[1], lines[3], lines[4]), 3, "deleted", 0},
		{"head deleted", join(lines[1], lines[2]), 1, "deleted", 0},
		{"inserted copy", join(lines[0], lines[1], lines[1], lines[2], lines[3], lines[4]), 3, "inserted", 0},
		{"swapped", join(lines[0], lines[2], lines[1], lines[3], lines[4]), 2, "deleted", 0},
		{"truncated tail", join(lines[0], lines[1], lines[2][:40]), 3, "truncated", 0},
		{"cut mid-file", join(lines[0], lines[1][:30]+"\n", lines[2]), 2, "truncated", 0},
		{"unchained", `{"method":"tools/call","decision":"deny"}` + "\n", 1, "unchained", 0},
		{"garbage", "\x00\x01\n", 1, "truncated", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, p := Verify([]Source{{Name: "log", R: strings.NewReader(tc.log)}})
			if tc.kind == "" {
				if p != nil {
					t.Fatalf("problem %v", p)
				}
				if h.Records != tc.wantRecords {
					t.Errorf("records = %d, want %d", h.Records, tc.wantRecords)
				}
				return
			}
			if p == nil || p.Kind != tc.kind || p.Line != tc.line {
				t.Fatalf("problem = %v, want %s at line %d", p, tc.kind, tc.line)
			}
		})
	}
}

// TestChainAcrossRestartAndRotation: the chain continues in the same file
// after a restart (Open appends) and into a new file after a rotation
// (rename, then Reopen), and verify reads the files as one chain.
func TestChainAcrossRestartAndRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "decisions.log")
	rec := &Record{Method: "tools/call", Tool: "get_time", Decision: "allow", Rule: "get_time"}
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Log(rec)
	w.Log(rec)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if w, err = Open(path); err != nil { // a restart
		t.Fatal(err)
	}
	w.Log(rec)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := w.Reopen(); err != nil {
		t.Fatal(err)
	}
	w.Log(rec)
	w.Log(rec)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	open := func(name string) Source {
		f, err := os.Open(name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return Source{Name: name, R: f}
	}
	h, p := Verify([]Source{open(path + ".1"), open(path)})
	if p != nil || h.Records != 5 || h.Seq != 5 {
		t.Fatalf("head %+v, problem %v", h, p)
	}
	// The new file alone does not start a chain.
	if _, p := Verify([]Source{open(path)}); p == nil || p.Kind != "deleted" || p.Line != 1 {
		t.Errorf("rotated file alone: %v", p)
	}
	// Out of order: the chain breaks at the first file's first line.
	if _, p := Verify([]Source{open(path), open(path + ".1")}); p == nil {
		t.Error("files out of order verify")
	}
}

// TestOpenAfterCrash: a line cut short by a crash stays (verify reports
// it) and the records after it go on their own lines.
func TestOpenAfterCrash(t *testing.T) {
	path := filepath.Join(t.TempDir(), "d.log")
	lines := chainLines(t, 2)
	if err := os.WriteFile(path, []byte(lines[0]+lines[1][:20]), 0o600); err != nil {
		t.Fatal(err)
	}
	w, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w.Log(&Record{Method: "tools/call", Decision: "allow", Rule: "x"})
	w.Close()
	data, _ := os.ReadFile(path)
	if n := strings.Count(string(data), "\n"); n != 3 {
		t.Fatalf("%d lines:\n%s", n, data)
	}
	_, p := Verify([]Source{{Name: "d.log", R: bytes.NewReader(data)}})
	if p == nil || p.Kind != "truncated" || p.Line != 2 {
		t.Errorf("problem %v, want truncated at 2", p)
	}
}

func FuzzVerify(f *testing.F) {
	f.Add(strings.Join(chainLines(&testing.T{}, 3), ""))
	f.Add("{\"seq\":1,\"prev\":\"" + Genesis + "\"}\n")
	f.Fuzz(func(t *testing.T, log string) {
		h, p := Verify([]Source{{Name: "f", R: strings.NewReader(log)}})
		if p == nil && h.Records > strings.Count(log, "\n") {
			t.Fatalf("%d records from %d lines", h.Records, strings.Count(log, "\n"))
		}
	})
}
