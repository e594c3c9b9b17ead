package memlimit

import (
	"errors"
	"fmt"
	"io/fs"
	"strconv"
	"strings"
)

// cgroupLimit returns the memory limit of the process's cgroup in bytes
// (0: none) and the file that set it, reading files with readFile. The
// limit is the lowest of the cgroup's and its ancestors' that the
// process's cgroup mount shows: a parent's limit binds its children too.
// In a container with a cgroup namespace of its own (cgroup v2's default)
// or a v1 mount rooted at the container's cgroup (runc's), that is the
// container's cgroup alone.
func cgroupLimit(readFile func(string) ([]byte, error)) (int64, string, error) {
	procCgroup, err := readFile("/proc/self/cgroup")
	if err != nil {
		return 0, "", err
	}
	path, v1, err := memoryCgroup(string(procCgroup))
	if err != nil {
		return 0, "", fmt.Errorf("/proc/self/cgroup: %v", err)
	}
	mountinfo, err := readFile("/proc/self/mountinfo")
	if err != nil {
		return 0, "", err
	}
	dir, rel, err := cgroupMount(string(mountinfo), path, v1)
	if err != nil {
		return 0, "", fmt.Errorf("/proc/self/mountinfo: %v", err)
	}
	file := "/memory.max"
	if v1 {
		file = "/memory.limit_in_bytes"
	}
	var limit int64
	var from string
	for {
		name := dir + rel + file
		data, err := readFile(name)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			// No limit at this level: cgroup v2's root has no
			// memory.max, nor has a cgroup whose parent did not enable
			// the memory controller.
		case err != nil:
			return 0, "", err
		default:
			n, err := parseLimit(string(data))
			if err != nil {
				return 0, "", fmt.Errorf("%s: %v", name, err)
			}
			if n > 0 && (limit == 0 || n < limit) {
				limit, from = n, name
			}
		}
		if rel == "" {
			return limit, from, nil
		}
		rel = rel[:strings.LastIndexByte(rel, '/')]
	}
}

// memoryCgroup returns the process's memory cgroup from the contents of
// /proc/self/cgroup (man 7 cgroups), one "hierarchy-ID:controllers:path"
// line per hierarchy, and whether it is a cgroup v1 one. A v1 hierarchy
// with the memory controller wins: a controller is bound to v1 or to v2,
// never both, and on a hybrid system (systemd's, and this project's test
// node) v2's "0::" line is there too, without it.
func memoryCgroup(procCgroup string) (path string, v1 bool, err error) {
	var v2path string
	for line := range strings.Lines(procCgroup) {
		line = strings.TrimSuffix(line, "\n")
		id, rest, ok1 := strings.Cut(line, ":")
		controllers, p, ok2 := strings.Cut(rest, ":")
		if !ok1 || !ok2 || !strings.HasPrefix(p, "/") {
			return "", false, fmt.Errorf("line %q is not hierarchy-ID:controllers:/path", line)
		}
		switch {
		case id == "0" && controllers == "":
			v2path = p
		case hasOption(controllers, "memory"):
			return p, true, nil
		}
	}
	if v2path == "" {
		return "", false, errors.New("no memory cgroup: no v1 hierarchy with the memory controller and no v2 (0::) line")
	}
	return v2path, false, nil
}

// cgroupMount finds the mount of the cgroup hierarchy holding path in the
// contents of /proc/self/mountinfo (man 5 proc_pid_mountinfo) and returns
// its mount point and path relative to the mount's root ("" when path is
// the root, else "/a/b"). A mount shows only the cgroups under its root:
// runc bind-mounts a v1 container's own cgroup (root
// /kubepods/.../<container>), and a cgroup namespace shows its own as "/".
// The first mount that holds path is used, as the Go runtime does for the
// CPU limit.
func cgroupMount(mountinfo, path string, v1 bool) (dir, rel string, err error) {
	for line := range strings.Lines(mountinfo) {
		// ID parent major:minor root mount-point options [optional...] - type source super-options
		if !strings.Contains(line, " - cgroup") {
			continue // not a cgroup mount; splitting every line is half the cost
		}
		f := strings.Fields(line)
		sep := 6
		for sep < len(f) && f[sep] != "-" {
			sep++
		}
		if sep+3 >= len(f) {
			return "", "", fmt.Errorf("line %q has no \" - type source options\" part", strings.TrimSpace(line))
		}
		fstype, superOptions := f[sep+1], f[sep+3]
		if v1 && (fstype != "cgroup" || !hasOption(superOptions, "memory")) || !v1 && fstype != "cgroup2" {
			continue
		}
		root, err1 := unescape(f[3])
		mnt, err2 := unescape(f[4])
		if err := errors.Join(err1, err2); err != nil {
			return "", "", fmt.Errorf("line %q: %v", strings.TrimSpace(line), err)
		}
		rel, ok := under(path, root)
		// A path outside the mount's root ("/../x": outside the process's
		// cgroup namespace) is not reachable through it.
		if !ok || rel == "/.." || strings.HasPrefix(rel, "/../") {
			continue
		}
		return strings.TrimSuffix(mnt, "/"), rel, nil
	}
	kind := "cgroup2"
	if v1 {
		kind = "cgroup (v1) with the memory controller"
	}
	return "", "", fmt.Errorf("no %s mount holds the process's cgroup %q", kind, path)
}

// under reports whether path is root or below it, and returns path
// relative to root: "" for root itself, else "/a/b".
func under(path, root string) (string, bool) {
	root = strings.TrimSuffix(root, "/")
	if path == root || path == root+"/" {
		return "", true
	}
	rel, ok := strings.CutPrefix(path, root)
	if !ok || !strings.HasPrefix(rel, "/") {
		return "", false
	}
	return strings.TrimSuffix(rel, "/"), true
}

// hasOption reports whether the comma-separated list holds opt.
func hasOption(list, opt string) bool {
	for o := range strings.SplitSeq(list, ",") {
		if o == opt {
			return true
		}
	}
	return false
}

// unescape undoes mountinfo's octal escapes of a path ("\040" for a space;
// the kernel escapes space, tab, newline and backslash).
func unescape(s string) (string, error) {
	if !strings.Contains(s, `\`) {
		return s, nil
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' {
			b.WriteByte(s[i])
			continue
		}
		if i+3 >= len(s) {
			return "", fmt.Errorf("path %q: escape at its end", s)
		}
		c, err := strconv.ParseUint(s[i+1:i+4], 8, 8)
		if err != nil {
			return "", fmt.Errorf("path %q: %q is not an octal escape", s, s[i:i+4])
		}
		b.WriteByte(byte(c))
		i += 3
	}
	return b.String(), nil
}

// noLimit is where a cgroup limit means "none": v1 reports no limit as the
// largest page-aligned int64 (0x7FFFFFFFFFFFF000 with 4 KiB pages), and no
// machine has 4 EiB.
const noLimit = 1 << 62

// parseLimit reads memory.max ("max" or bytes) or memory.limit_in_bytes
// (bytes) and returns the limit in bytes, 0 for none.
func parseLimit(s string) (int64, error) {
	s = strings.TrimSuffix(s, "\n")
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is neither \"max\" nor a positive number of bytes", s)
	}
	if n >= noLimit {
		return 0, nil
	}
	return int64(n), nil
}
