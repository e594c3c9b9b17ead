package memlimit

import (
	"io/fs"
	"os"
	"strings"
	"testing"
	"testing/fstest"
)

func TestMemoryCgroup(t *testing.T) {
	for _, tc := range []struct {
		name, in string
		path     string
		v1       bool
		err      string
	}{
		{name: "v2 in a cgroup namespace", in: "0::/\n", path: "/"},
		{name: "v2 nested", in: "0::/kubepods.slice/kubepods-burstable.slice/cri-containerd-ab.scope\n",
			path: "/kubepods.slice/kubepods-burstable.slice/cri-containerd-ab.scope"},
		{name: "v1 beside v2 (hybrid)", in: "9:name=systemd:/\n4:memory:/kubepods/burstable/pod1/c1\n1:cpu:/\n0::/\n",
			path: "/kubepods/burstable/pod1/c1", v1: true},
		{name: "v1 memory among other controllers", in: "5:cpu,memory:/a\n", path: "/a", v1: true},
		{name: "v1 without memory, v2 holds it", in: "1:cpu,cpuacct:/x\n0::/y\n", path: "/y"},
		{name: "a colon in the path", in: "0::/a:b\n", path: "/a:b"},
		{name: "no final newline", in: "0::/z", path: "/z"},
		{name: "outside the namespace", in: "0::/../../init\n", path: "/../../init"},
		{name: "v1 without memory only", in: "1:cpu:/x\n", err: "no memory cgroup"},
		{name: "empty", in: "", err: "no memory cgroup"},
		{name: "garbage", in: "hello\n", err: `line "hello" is not`},
		{name: "relative path", in: "0::a\n", err: `line "0::a" is not`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path, v1, err := memoryCgroup(tc.in)
			if !errorIs(t, err, tc.err) {
				return
			}
			if path != tc.path || v1 != tc.v1 {
				t.Errorf("got %q v1=%v, want %q v1=%v", path, v1, tc.path, tc.v1)
			}
		})
	}
}

// Mount lines as the kernel writes them.
const (
	mountV2     = "30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot\n"
	mountV2Ctr  = "1187 1179 0:26 / /sys/fs/cgroup ro,nosuid,nodev,noexec,relatime - cgroup2 cgroup rw,nsdelegate\n"
	mountV1CPU  = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
	mountV1Mem  = "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
	mountV1Runc = "1200 1190 0:32 /kubepods/burstable/pod1/c1 /sys/fs/cgroup/memory ro,nosuid,nodev,noexec,relatime master:15 - cgroup cgroup rw,memory\n"
	mountRoot   = "22 1 254:1 / / rw,relatime - ext4 /dev/vda rw\n"
	mountProc   = "24 22 0:22 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw\n"
	mountUnif   = "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n"
)

func TestCgroupMount(t *testing.T) {
	for _, tc := range []struct {
		name, mountinfo, path string
		v1                    bool
		dir, rel              string
		err                   string
	}{
		{name: "v2, own namespace", mountinfo: mountRoot + mountProc + mountV2Ctr, path: "/",
			dir: "/sys/fs/cgroup", rel: ""},
		{name: "v2, host", mountinfo: mountRoot + mountV2, path: "/user.slice/user-1000.slice/app.scope",
			dir: "/sys/fs/cgroup", rel: "/user.slice/user-1000.slice/app.scope"},
		{name: "v1 runc bind mount of the container's cgroup", mountinfo: mountRoot + mountV1Runc, path: "/kubepods/burstable/pod1/c1", v1: true,
			dir: "/sys/fs/cgroup/memory", rel: ""},
		{name: "v1 hybrid host: the memory mount, not cpu's or unified's", mountinfo: mountRoot + mountV1CPU + mountV1Mem + mountUnif, path: "/process_api/5f", v1: true,
			dir: "/sys/fs/cgroup/memory", rel: "/process_api/5f"},
		{name: "hybrid, v2 asked: the unified mount", mountinfo: mountV1Mem + mountUnif, path: "/a",
			dir: "/sys/fs/cgroup/unified", rel: "/a"},
		{name: "escaped mount point and root", mountinfo: `7 1 0:26 /my\040pods /sys/fs/cgroup\040x rw - cgroup2 cgroup2 rw` + "\n", path: "/my pods/c 1",
			dir: "/sys/fs/cgroup x", rel: "/c 1"},
		{name: "optional fields, several", mountinfo: "30 23 0:26 / /sys/fs/cgroup rw shared:4 master:1 propagate_from:2 - cgroup2 cgroup2 rw\n", path: "/a",
			dir: "/sys/fs/cgroup", rel: "/a"},
		{name: "first mount that holds the path", mountinfo: "1 0 0:1 /other /mnt/a rw - cgroup2 cgroup2 rw\n" + mountV2, path: "/x",
			dir: "/sys/fs/cgroup", rel: "/x"},
		{name: "a root that is a prefix of the name only", mountinfo: "1 0 0:1 /kube /mnt/a rw - cgroup2 cgroup2 rw\n", path: "/kubepods",
			err: `no cgroup2 mount holds the process's cgroup "/kubepods"`},
		{name: "outside the namespace", mountinfo: mountV2Ctr, path: "/../init", err: "no cgroup2 mount"},
		{name: "v1 asked, only v2 mounted", mountinfo: mountV2, path: "/a", v1: true, err: "no cgroup (v1) with the memory controller mount"},
		{name: "a line cut short", mountinfo: "30 23 0:26 / /sys/fs/cgroup rw - cgroup2\n", path: "/", err: "has no \" - type source options\" part"},
		{name: "not a cgroup mount, malformed: skipped", mountinfo: "30 23 0:26 /\n" + mountV2, path: "/", dir: "/sys/fs/cgroup"},
		{name: "bad escape", mountinfo: `7 1 0:26 / /sys/fs/cgroup\098 rw - cgroup2 cgroup2 rw` + "\n", path: "/", err: `is not an octal escape`},
		{name: "empty", mountinfo: "", path: "/", err: "no cgroup2 mount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir, rel, err := cgroupMount(tc.mountinfo, tc.path, tc.v1)
			if !errorIs(t, err, tc.err) {
				return
			}
			if dir != tc.dir || rel != tc.rel {
				t.Errorf("got %q + %q, want %q + %q", dir, rel, tc.dir, tc.rel)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		err  string
	}{
		{in: "max\n", want: 0},
		{in: "max", want: 0},
		{in: "268435456\n", want: 268435456},
		{in: "9223372036854771712\n", want: 0}, // v1's "no limit", 4 KiB pages
		{in: "9223372036854710272\n", want: 0}, // the same, 64 KiB pages
		{in: "4611686018427387903\n", want: 4611686018427387903},
		{in: "0\n", err: `"0" is neither`},
		{in: "-1\n", err: `"-1" is neither`},
		{in: "", err: `"" is neither`},
		{in: "256Mi\n", err: `"256Mi" is neither`},
		{in: " 42\n", err: `" 42" is neither`},
		{in: "18446744073709551616\n", err: "is neither"},
	} {
		got, err := parseLimit(tc.in)
		if !errorIs(t, err, tc.err) {
			continue
		}
		if got != tc.want {
			t.Errorf("parseLimit(%q) = %d, want %d", tc.in, got, tc.want)
		}
	}
}

func TestCgroupLimit(t *testing.T) {
	const mi = 1 << 20
	for _, tc := range []struct {
		name  string
		files map[string]string
		want  int64
		from  string
		err   string
	}{
		{name: "v2 container", files: map[string]string{
			"proc/self/cgroup": "0::/\n", "proc/self/mountinfo": mountRoot + mountV2Ctr,
			"sys/fs/cgroup/memory.max": "268435456\n",
		}, want: 256 * mi, from: "/sys/fs/cgroup/memory.max"},
		{name: "v2 no limit", files: map[string]string{
			"proc/self/cgroup": "0::/\n", "proc/self/mountinfo": mountV2Ctr,
			"sys/fs/cgroup/memory.max": "max\n",
		}},
		{name: "v2 root cgroup: no memory.max", files: map[string]string{
			"proc/self/cgroup": "0::/\n", "proc/self/mountinfo": mountV2,
		}},
		{name: "v2 nested: the lowest level wins, the root has no file", files: map[string]string{
			"proc/self/cgroup": "0::/a/b/c\n", "proc/self/mountinfo": mountV2,
			"sys/fs/cgroup/a/b/c/memory.max": "max\n",
			"sys/fs/cgroup/a/b/memory.max":   "104857600\n",
			"sys/fs/cgroup/a/memory.max":     "209715200\n",
		}, want: 100 * mi, from: "/sys/fs/cgroup/a/b/memory.max"},
		{name: "v2 nested: the controller not enabled below a level", files: map[string]string{
			"proc/self/cgroup": "0::/a/b\n", "proc/self/mountinfo": mountV2,
			"sys/fs/cgroup/a/memory.max": "209715200\n",
		}, want: 200 * mi, from: "/sys/fs/cgroup/a/memory.max"},
		{name: "v1 kubernetes container (runc's bind mount)", files: map[string]string{
			"proc/self/cgroup":                           "4:memory:/kubepods/burstable/pod1/c1\n0::/\n",
			"proc/self/mountinfo":                        mountRoot + mountUnif + mountV1Runc,
			"sys/fs/cgroup/memory/memory.limit_in_bytes": "268435456\n",
			"sys/fs/cgroup/unified/memory.max":           "1\n", // not the memory controller's
		}, want: 256 * mi, from: "/sys/fs/cgroup/memory/memory.limit_in_bytes"},
		{name: "v1 host, walked to the root", files: map[string]string{
			"proc/self/cgroup": "4:memory:/p/c\n", "proc/self/mountinfo": mountV1Mem,
			"sys/fs/cgroup/memory/p/c/memory.limit_in_bytes": "9223372036854771712\n",
			"sys/fs/cgroup/memory/p/memory.limit_in_bytes":   "67108864\n",
			"sys/fs/cgroup/memory/memory.limit_in_bytes":     "9223372036854771712\n",
		}, want: 64 * mi, from: "/sys/fs/cgroup/memory/p/memory.limit_in_bytes"},
		{name: "garbage in the limit", files: map[string]string{
			"proc/self/cgroup": "0::/\n", "proc/self/mountinfo": mountV2Ctr,
			"sys/fs/cgroup/memory.max": "lots\n",
		}, err: `/sys/fs/cgroup/memory.max: "lots" is neither`},
		{name: "no /proc", files: map[string]string{}, err: "file does not exist"},
		{name: "no mountinfo", files: map[string]string{"proc/self/cgroup": "0::/\n"}, err: "file does not exist"},
		{name: "no cgroup mount", files: map[string]string{
			"proc/self/cgroup": "0::/\n", "proc/self/mountinfo": mountRoot,
		}, err: "/proc/self/mountinfo: no cgroup2 mount"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fsys := fstest.MapFS{}
			for name, data := range tc.files {
				fsys[name] = &fstest.MapFile{Data: []byte(data)}
			}
			readFile := func(name string) ([]byte, error) {
				return fs.ReadFile(fsys, strings.TrimPrefix(name, "/"))
			}
			got, from, err := cgroupLimit(readFile)
			if !errorIs(t, err, tc.err) {
				return
			}
			if got != tc.want || from != tc.from {
				t.Errorf("got %d from %q, want %d from %q", got, from, tc.want, tc.from)
			}
		})
	}
}

// errorIs checks err against want ("" for none, else a part of its text)
// and reports whether the caller should go on to check the result.
func errorIs(t *testing.T, err error, want string) bool {
	t.Helper()
	switch {
	case want == "" && err != nil:
		t.Errorf("unexpected error: %v", err)
	case want != "" && err == nil:
		t.Errorf("no error, want one containing %q", want)
	case want != "" && !strings.Contains(err.Error(), want):
		t.Errorf("error %q, want one containing %q", err, want)
	}
	return want == "" && err == nil
}

// BenchmarkCgroupLimit is what Apply adds to a start: reading this
// machine's /proc/self/cgroup, /proc/self/mountinfo and its cgroups' limits.
func BenchmarkCgroupLimit(b *testing.B) {
	if _, _, err := cgroupLimit(os.ReadFile); err != nil {
		b.Skip(err)
	}
	for b.Loop() {
		_, _, _ = cgroupLimit(os.ReadFile)
	}
}
