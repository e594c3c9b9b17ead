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
// the child has GOMEMLIMIT, which stands. It needs root and a cgroup v1
// memory hierarchy it can write (a cgroup v2 one that holds processes
// cannot enable the memory controller for a child; the tables cover v2).
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
	if err := os.WriteFile(filepath.Join(cg, "memory.limit_in_bytes"), []byte(strconv.Itoa(limit)), 0); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		env  []string
		want string // Bytes Source Cgroup, then the runtime's limit
	}{
		{env: nil, want: fmt.Sprintf("%d cgroup %d %d", FromCgroup(limit), limit, FromCgroup(limit))},
		{env: []string{"GOMEMLIMIT="}, want: fmt.Sprintf("%d cgroup %d %d", FromCgroup(limit), limit, FromCgroup(limit))},
		{env: []string{"GOMEMLIMIT=100MiB"}, want: fmt.Sprintf("%d GOMEMLIMIT 0 %d", 100<<20, 100<<20)},
		{env: []string{"GOMEMLIMIT=off"}, want: fmt.Sprintf("0 GOMEMLIMIT 0 %d", int64(math.MaxInt64))},
	} {
		t.Run(strings.Join(append([]string{"env"}, tc.env...), " "), func(t *testing.T) {
			if got := applyInCgroup(t, cg, tc.env); got != tc.want {
				t.Errorf("Apply in a cgroup limited to %d bytes: got %q, want %q (bytes source cgroup, runtime's limit)", limit, got, tc.want)
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
