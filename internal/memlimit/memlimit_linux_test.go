package memlimit

import (
	"fmt"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
)

// TestApplyInCgroup runs Apply in a child process inside a real cgroup
// with a 64 MiB memory limit: the runtime's limit is 90 % of it, unless
// the child has GOMEMLIMIT, which stands. A limit that is not a whole
// number of pages is rounded down to one by the kernel
// (page_counter_memparse), and Apply derives the runtime's from what the
// kernel keeps, as e2e's TestSidecarMemoryLimit expects of a container
// limit such as 250M. It needs root and a cgroup v1 memory hierarchy it
// can write (a cgroup v2 one that holds processes cannot enable the memory
// controller for a child; the tables cover v2).
func TestApplyInCgroup(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to make a cgroup")
	}
	dir := ownMemoryCgroup(t)
	cg := filepath.Join(dir, fmt.Sprintf("memlimit-test-%d", os.Getpid()))
	if err := os.Mkdir(cg, 0o755); err != nil {
		t.Skipf("cannot make a cgroup: %v", err)
	}
	t.Cleanup(func() { _ = os.Remove(cg) })
	const limit = 64 << 20
	page := int64(os.Getpagesize())
	// 250M, as a container limit is often written: 61,035 pages of 4 KiB
	// and 640 bytes.
	const unaligned = 250_000_000
	kept := unaligned / page * page
	for _, tc := range []struct {
		limit int64 // written to memory.limit_in_bytes
		env   []string
		want  string // Bytes Source Cgroup, then the runtime's limit
	}{
		{limit: limit, env: nil, want: fmt.Sprintf("%d cgroup %d %d", FromCgroup(limit), limit, FromCgroup(limit))},
		{limit: limit, env: []string{"GOMEMLIMIT="}, want: fmt.Sprintf("%d cgroup %d %d", FromCgroup(limit), limit, FromCgroup(limit))},
		{limit: limit, env: []string{"GOMEMLIMIT=100MiB"}, want: fmt.Sprintf("%d GOMEMLIMIT 0 %d", 100<<20, 100<<20)},
		{limit: limit, env: []string{"GOMEMLIMIT=off"}, want: fmt.Sprintf("0 GOMEMLIMIT 0 %d", int64(math.MaxInt64))},
		{limit: unaligned, env: nil, want: fmt.Sprintf("%d cgroup %d %d", FromCgroup(kept), kept, FromCgroup(kept))},
	} {
		t.Run(fmt.Sprintf("limit %d env %s", tc.limit, strings.Join(tc.env, " ")), func(t *testing.T) {
			if err := os.WriteFile(filepath.Join(cg, "memory.limit_in_bytes"), []byte(strconv.FormatInt(tc.limit, 10)), 0); err != nil {
				t.Fatal(err)
			}
			if got := applyInCgroup(t, cg, tc.env); got != tc.want {
				t.Errorf("Apply in a cgroup limited to %d bytes: got %q, want %q (bytes source cgroup, runtime's limit)", tc.limit, got, tc.want)
			}
		})
	}
}

// applyInCgroup starts TestApplyChild, moves it into cgroup cg before it
// calls Apply, and returns what it printed.
func applyInCgroup(t *testing.T, cg string, env []string) string {
	cmd := exec.Command(os.Args[0], "-test.run=^TestApplyChild$", "-test.count=1")
	for _, e := range os.Environ() {
		if !strings.HasPrefix(e, "GOMEMLIMIT=") {
			cmd.Env = append(cmd.Env, e)
		}
	}
	cmd.Env = append(append(cmd.Env, "MEMLIMIT_TEST_CHILD=1"), env...)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	err = os.WriteFile(filepath.Join(cg, "cgroup.procs"), []byte(strconv.Itoa(cmd.Process.Pid)), 0)
	stdin.Close() // the child applies once its input ends
	if werr := cmd.Wait(); err != nil || werr != nil {
		t.Fatalf("moving the child into %s: %v; child: %v\n%s", cg, err, werr, out.String())
	}
	for line := range strings.Lines(out.String()) {
		if r, ok := strings.CutPrefix(line, "RESULT "); ok {
			return strings.TrimSpace(r)
		}
	}
	t.Fatalf("the child printed no result:\n%s", out.String())
	return ""
}

// TestApplyChild is TestApplyInCgroup's child process.
func TestApplyChild(t *testing.T) {
	if os.Getenv("MEMLIMIT_TEST_CHILD") == "" {
		t.Skip("run by TestApplyInCgroup")
	}
	_, _ = io.Copy(io.Discard, os.Stdin)
	l, err := Apply()
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("RESULT %d %s %d %d\n", l.Bytes, l.Source, l.Cgroup, debug.SetMemoryLimit(-1))
}

// ownMemoryCgroup is the directory of this process's cgroup v1 memory
// cgroup, or skips.
func ownMemoryCgroup(t *testing.T) string {
	procCgroup, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		t.Skip(err)
	}
	path, v1, err := memoryCgroup(string(procCgroup))
	if err != nil || !v1 {
		t.Skipf("no cgroup v1 memory hierarchy (%v)", err)
	}
	mountinfo, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Skip(err)
	}
	dir, rel, err := cgroupMount(string(mountinfo), path, true)
	if err != nil {
		t.Skip(err)
	}
	return dir + rel
}
