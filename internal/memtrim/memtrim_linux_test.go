package memtrim

import (
	"fmt"
	"os"
	"runtime"
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
	AfterStart(t.Context())
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

// TestDroppable: only the executable's private read-only mappings with no
// written page are dropped; a RELRO mapping (read-only now, but written by
// the dynamic loader, so Anonymous > 0) keeps its pages.
func TestDroppable(t *testing.T) {
	const exe = "/usr/bin/mcpguard"
	entry := func(addr, perms, path, anon string) string {
		return fmt.Sprintf("%s %s 00000000 fd:01 42 %s\nSize: 8 kB\nRss: 8 kB\nAnonymous: %s\nVmFlags: rd mr mw me\n", addr, perms, path, anon)
	}
	tests := []struct {
		name, smaps string
		want        []mapping
	}{
		{"code and read-only data", entry("1000-3000", "r-xp", exe, "0 kB") + entry("3000-4000", "r--p", exe, "0 kB"),
			[]mapping{{0x1000, 0x3000}, {0x3000, 0x4000}}},
		{"RELRO, written by the loader", entry("5000-6000", "r--p", exe, "4 kB"), nil},
		{"writable data", entry("6000-7000", "rw-p", exe, "0 kB"), nil},
		{"shared", entry("7000-8000", "r--s", exe, "0 kB"), nil},
		{"another file", entry("8000-9000", "r-xp", "/usr/lib/libc.so.6", "0 kB"), nil},
		{"anonymous mapping between", entry("1000-2000", "r-xp", exe, "0 kB") +
			"9000-a000 rw-p 00000000 00:00 0\nAnonymous: 4 kB\n" + entry("a000-b000", "r--p", exe, "0 kB"),
			[]mapping{{0x1000, 0x2000}, {0xa000, 0xb000}}},
		{"no Anonymous line: not known unwritten", "1000-2000 r-xp 00000000 fd:01 42 " + exe + "\nRss: 4 kB\n", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := droppable(strings.NewReader(tt.smaps), exe)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Errorf("droppable = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestDropIsNotWork: the idle trimmer takes allocations above its noise
// for work, so its own drop of the pages must allocate less, or every drop
// would be followed by another.
func TestDropIsNotWork(t *testing.T) {
	var before, after runtime.MemStats
	const n = 10
	runtime.ReadMemStats(&before)
	for range n {
		dropExecutablePages()
	}
	runtime.ReadMemStats(&after)
	per := (after.TotalAlloc - before.TotalAlloc) / n
	t.Logf("a drop allocates %d bytes", per)
	if per >= defaultIdle.noise {
		t.Errorf("a drop allocates %d bytes, not below the idle trimmer's noise (%d)", per, defaultIdle.noise)
	}
}
