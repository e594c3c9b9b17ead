package memtrim

import (
	"os"
	"strconv"
	"strings"
	"testing"
)

// written lives in the executable's writable data mapping, which AfterStart
// must leave alone.
var written = []byte("initial value, as the file holds it")

func rssFileKiB(t *testing.T) int {
	t.Helper()
	data, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(data), "\n") {
		if v, ok := strings.CutPrefix(line, "RssFile:"); ok {
			n, err := strconv.Atoi(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")))
			if err != nil {
				t.Fatal(err)
			}
			return n
		}
	}
	t.Fatal("no RssFile in /proc/self/status")
	return 0
}

func TestAfterStartDropsOnlyReadOnlyPages(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	maps := executableMappings(exe)
	if len(maps) < 2 {
		t.Fatalf("found %d read-only mappings of %s, want its code and its read-only data", len(maps), exe)
	}
	copy(written, "changed in memory")
	before := rssFileKiB(t)
	AfterStart()
	after := rssFileKiB(t)
	t.Logf("file-backed resident memory %d KiB before, %d KiB after", before, after)
	if after >= before {
		t.Errorf("file-backed resident memory %d KiB after, not below %d KiB before", after, before)
	}
	if got := string(written[:len("changed in memory")]); got != "changed in memory" {
		t.Fatalf("a writable page lost what was written to it: %q", got)
	}
	// The code and tables dropped are mapped back when used.
	if s := strings.Repeat("ab", 3); s != "ababab" {
		t.Fatal(s)
	}
}
