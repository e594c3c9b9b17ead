//go:build linux && (amd64 || arm64 || riscv64 || ppc64le || ppc64 || s390x || loong64 || mips64 || mips64le)

package prefault

import (
	"os"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"unsafe"
)

// TestPopulateCode drops the test executable's code from the process's
// resident set, as internal/memtrim does once idle, and finds all of it
// resident again after populateCode: without it, only the pages the test
// runs would come back, 64 KiB around each (reading smaps alone brings
// back about 60 % of a test binary's code).
func TestPopulateCode(t *testing.T) {
	if err != nil {
		t.Skipf("populating the code segment failed at init (%v): before Linux 5.14, it does nothing", err)
	}
	size, _ := codeKiB(t)
	drop(t)
	if _, rss := codeKiB(t); rss > size-256 {
		t.Fatalf("code segment %d KiB, %d KiB resident after dropping it: cannot test", size, rss)
	}
	if err := populateCode(); err != nil {
		t.Fatal(err)
	}
	// All of it, bar a partial last page.
	if _, rss := codeKiB(t); rss < size-4 {
		t.Errorf("code segment %d KiB, %d KiB resident after populateCode", size, rss)
	}
}

func drop(t *testing.T) {
	var aux [64]uintptr
	if !readAuxv(aux[:]) {
		t.Fatal("no /proc/self/auxv")
	}
	var at, n uintptr
	for i := 0; i+1 < len(aux); i += 2 {
		switch aux[i] {
		case atPHDR:
			at = aux[i+1]
		case atPHNUM:
			n = aux[i+1]
		}
	}
	headers := unsafe.Slice((*programHeader)(*(*unsafe.Pointer)(unsafe.Pointer(&at))), n)
	for _, s := range codeSegments(headers, at, uintptr(syscall.Getpagesize())) {
		if _, _, e := syscall.Syscall(syscall.SYS_MADVISE, s.start, s.end-s.start, syscall.MADV_DONTNEED); e != 0 {
			t.Fatal(e)
		}
	}
}

// codeKiB reads the size and resident size of the executable's code
// mapping from /proc/self/smaps.
func codeKiB(t *testing.T) (size, rss int) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Fatal(err)
	}
	inCode, found := false, false
	for line := range strings.Lines(string(data)) {
		fields := strings.Fields(line)
		switch {
		case len(fields) >= 5 && !strings.HasSuffix(fields[0], ":"):
			inCode = len(fields) == 6 && fields[5] == exe && fields[1] == "r-xp"
			found = found || inCode
		case inCode && fields[0] == "Size:":
			size, _ = strconv.Atoi(fields[1])
		case inCode && fields[0] == "Rss:":
			rss, _ = strconv.Atoi(fields[1])
		}
	}
	if !found {
		t.Fatalf("no r-xp mapping of %s in /proc/self/smaps", exe)
	}
	return size, rss
}

// TestCodeSegments: only loadable, executable, not writable segments,
// where the executable was loaded (PIE or not), from the page they begin in.
func TestCodeSegments(t *testing.T) {
	const page = 4096
	text := programHeader{typ: ptLoad, flags: pfX | 4, vaddr: 0x400000, filesz: 0x1000123}
	rodata := programHeader{typ: ptLoad, flags: 4, vaddr: 0x1401123, filesz: 0x2000}
	data := programHeader{typ: ptLoad, flags: pfW | 4, vaddr: 0x1500000, filesz: 0x3000}
	wx := programHeader{typ: ptLoad, flags: pfX | pfW | 4, vaddr: 0x1600000, filesz: 0x1000}
	note := programHeader{typ: 4, flags: pfX | 4, vaddr: 0x400f9c, filesz: 0x64}
	for _, c := range []struct {
		name    string
		headers []programHeader
		at      uintptr
		want    []segment
	}{
		{"fixed address", []programHeader{{typ: ptPHDR, vaddr: 0x400040}, text, rodata, data, wx, note}, 0x400040,
			[]segment{{0x400000, 0x1400123}}},
		{"no PT_PHDR: as linked", []programHeader{text, rodata, data}, 0x400040,
			[]segment{{0x400000, 0x1400123}}},
		{"position-independent, loaded elsewhere", []programHeader{{typ: ptPHDR, vaddr: 0x40}, {typ: ptLoad, flags: pfX | 4, vaddr: 0x1040, filesz: 0x5000}, data}, 0x7f0000000040,
			[]segment{{0x7f0000001000, 0x7f0000006040}}},
		{"no code", []programHeader{rodata, data, {typ: ptLoad, flags: pfX, vaddr: 0x2000000}}, 0x400040, nil},
	} {
		if got := codeSegments(c.headers, c.at, page); !slices.Equal(got, c.want) {
			t.Errorf("%s: %#x, want %#x", c.name, got, c.want)
		}
	}
}
