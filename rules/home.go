package rules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// This file holds what a policy learns from the machine it is loaded on:
// the user's home directory in path roots, and, with
// spec.paths.resolveSymlinks, where a path really leads. Both are for a
// policy enforced on the same machine as the tool server (`mcpguard wrap`
// on a laptop); in a pod neither applies.

// PathsSpec is spec.paths.
type PathsSpec struct {
	// ResolveSymlinks: after the lexical check, resolve the path's
	// symlinks on this machine, as the server would, and deny it when its
	// real location leaves the (equally resolved) roots. Only sound when
	// the policy runs on the server's machine (`mcpguard wrap`); a path
	// that does not exist yet is resolved up to its longest existing
	// parent. Off by default: in a pod the files are elsewhere.
	ResolveSymlinks bool `yaml:"resolveSymlinks"`
}

// expandHome replaces a leading "~", "$HOME" or "${HOME}" in a path root by
// the user's home directory.
func expandHome(root string) (string, error) {
	var rest string
	switch {
	case root == "~" || strings.HasPrefix(root, "~/"):
		rest = root[1:]
	case root == "$HOME" || strings.HasPrefix(root, "$HOME/"):
		rest = root[len("$HOME"):]
	case root == "${HOME}" || strings.HasPrefix(root, "${HOME}/"):
		rest = root[len("${HOME}"):]
	case strings.HasPrefix(root, "~"):
		return "", fmt.Errorf("names another user's home (%q); write ~/ for yours, or the full path", root)
	default:
		return root, nil
	}
	home, err := os.UserHomeDir()
	if err != nil || home == "" {
		return "", fmt.Errorf("starts with %q but the home directory is unknown (%v); write the full path", root, err)
	}
	return filepath.ToSlash(home) + rest, nil
}

// realPath resolves the symlinks of the clean absolute path p. A path that
// does not exist (a file about to be written) is resolved up to its longest
// existing parent, with the rest appended as written.
func realPath(p string) (string, error) {
	var tail []string
	cur := p
	for {
		real, err := filepath.EvalSymlinks(cur)
		if err == nil {
			for i := len(tail) - 1; i >= 0; i-- {
				real = filepath.Join(real, tail[i])
			}
			return filepath.ToSlash(real), nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", err
		}
		parent := filepath.Dir(cur)
		if parent == cur {
			return p, nil
		}
		tail = append(tail, filepath.Base(cur))
		cur = parent
	}
}

// evalRealPath is the second half of a path check under
// spec.paths.resolveSymlinks: p passed the lexical check; its real location
// must be under one of the roots' real locations too. What remains is a
// race: a symlink changed between this check and the server's open.
func (c *check) evalRealPath(p string) (bool, string, string, string) {
	clean, err := CleanPath(p)
	if err != nil {
		return false, "", fmt.Sprintf("argument %s: path is refused", c.ptr.text), err.Error()
	}
	real, err := realPath(clean)
	if err != nil {
		return false, "", fmt.Sprintf("argument %s: path cannot be resolved on this machine", c.ptr.text),
			fmt.Sprintf("path %q cannot be resolved on this machine: %v", truncate(clean), err)
	}
	var roots []string
	for _, root := range c.roots {
		r, err := realPath(root)
		if err != nil {
			continue
		}
		if PathWithin(real, r) {
			return true, "", "", ""
		}
		roots = append(roots, r)
	}
	return false, "", fmt.Sprintf("argument %s: path leads through a symlink outside the allowed roots (%s)", c.ptr.text, strings.Join(roots, ", ")),
		fmt.Sprintf("path %q leads through a symlink to %q, outside the allowed roots (%s)", truncate(clean), truncate(real), strings.Join(roots, ", "))
}
