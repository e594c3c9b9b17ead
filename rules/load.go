package rules

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// Load reads and compiles policy files: YAML ToolPolicy documents (a
// directory stands for the *.yaml and *.yml files in it, as a mounted
// ConfigMap is), and the Rego modules they reference. An invalid policy is
// a PolicyErrors listing every problem, each with file, line and field.
func Load(paths ...string) (*Engine, error) {
	if len(paths) == 0 {
		return nil, errors.New("no policy files given")
	}
	c, err := compileFiles(paths)
	if err != nil {
		return nil, err
	}
	e := &Engine{paths: slices.Clone(paths)}
	e.swap(c)
	return e, nil
}

// Parse compiles a policy from bytes; name stands for the file in errors,
// and Rego files it references are read relative to name's directory.
func Parse(name string, data []byte) (*Engine, error) {
	c, err := compileBytes(name, data)
	if err != nil {
		return nil, err
	}
	e := &Engine{name: name, data: slices.Clone(data)}
	e.swap(c)
	return e, nil
}

// Reload re-reads the files the engine was loaded from and swaps the new
// policy in atomically. On error the current policy stays in force: there
// is never a moment without a policy. Decisions in flight finish under the
// policy they started with.
func (e *Engine) Reload() error {
	if e.allowAll {
		return nil
	}
	e.reloadMu.Lock()
	defer e.reloadMu.Unlock()
	var c *compiled
	var err error
	if e.paths != nil {
		c, err = compileFiles(e.paths)
	} else {
		c, err = compileBytes(e.name, e.data)
	}
	if err != nil {
		return err
	}
	e.swap(c)
	return nil
}

func compileBytes(name string, data []byte) (*compiled, error) {
	ps, el := decodePolicies(name, data)
	return compile([]source{{file: name, data: data, policies: ps, el: el}})
}

func compileFiles(paths []string) (*compiled, error) {
	var files []string
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("policy %q cannot be read: %w", p, err)
		}
		if !fi.IsDir() {
			if strings.HasSuffix(p, ".rego") {
				return nil, fmt.Errorf("policy %q is a Rego module; reference it from a ToolPolicy's spec.rego.modules", p)
			}
			files = append(files, p)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, fmt.Errorf("policy directory %q cannot be read: %w", p, err)
		}
		n := len(files)
		for _, de := range entries {
			name := de.Name()
			if strings.HasPrefix(name, ".") || !(strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")) {
				continue // ConfigMap mounts hold ..data and ..<timestamp> entries
			}
			files = append(files, filepath.Join(p, name))
		}
		if len(files) == n {
			return nil, fmt.Errorf("policy directory %q holds no *.yaml or *.yml file", p)
		}
	}
	var srcs []source
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("policy %q cannot be read: %w", f, err)
		}
		ps, el := decodePolicies(f, data)
		srcs = append(srcs, source{file: f, data: data, policies: ps, el: el})
	}
	return compile(srcs)
}

// Watch reloads the policy whenever one of its files changes, until ctx is
// done, and reports each reload's outcome to onReload (nil: the new policy
// is in force; an error: the old one still is). It watches the files'
// directories rather than the files, which is what survives both editors
// that replace a file by renaming and Kubernetes ConfigMap updates, which
// swap the "..data" symlink the files point through. Bursts of events are
// coalesced into one reload.
func (e *Engine) Watch(ctx context.Context, onReload func(error)) error {
	if e.paths == nil {
		return errors.New("the policy was not loaded from files; there is nothing to watch")
	}
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching policy files: %w", err)
	}
	defer w.Close()
	watched := map[string]bool{}
	names := map[string]bool{"..data": true}
	add := func(dir string) error {
		if watched[dir] {
			return nil
		}
		if err := w.Add(dir); err != nil {
			return fmt.Errorf("watching policy directory %q: %w", dir, err)
		}
		watched[dir] = true
		return nil
	}
	for _, p := range e.paths {
		if fi, err := os.Stat(p); err == nil && fi.IsDir() {
			if err := add(p); err != nil {
				return err
			}
			names["*"+filepath.Clean(p)] = true
			continue
		}
		if err := add(filepath.Dir(p)); err != nil {
			return err
		}
		names[filepath.Base(p)] = true
	}
	// The files of the current policy, Rego modules included; called again
	// after each reload, since a new policy may reference new modules.
	watchFiles := func() error {
		for _, f := range e.Files() {
			if err := add(filepath.Dir(f)); err != nil {
				return err
			}
			names[filepath.Base(f)] = true
		}
		return nil
	}
	if err := watchFiles(); err != nil {
		return err
	}
	relevant := func(ev fsnotify.Event) bool {
		if names[filepath.Base(ev.Name)] || names["*"+filepath.Dir(ev.Name)] {
			return true
		}
		return strings.HasPrefix(filepath.Base(ev.Name), "..") // ConfigMap swap
	}
	const settle = 100 * time.Millisecond
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	// A change made after Load read the files and before the watches above
	// existed is one fsnotify never reports: it would stay unseen until the
	// next change. So compare what the files hold now with what the policy
	// in force was compiled from, and reload if they differ (or no longer
	// compile, which the reload reports).
	if now, err := compileFiles(e.paths); err != nil || now.sum != e.cur.Load().sum {
		timer.Reset(settle)
	}
	if e.watchReady != nil {
		e.watchReady()
	}
	for {
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("policy watcher closed")
			}
			if relevant(ev) {
				timer.Reset(settle)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("policy watcher closed")
			}
			if onReload != nil {
				onReload(fmt.Errorf("watching policy files: %w", err))
			}
		case <-timer.C:
			err := e.Reload()
			if err == nil {
				if werr := watchFiles(); werr != nil {
					err = fmt.Errorf("the new policy is in force, but its files are not all watched: %w", werr)
				}
			}
			if onReload != nil {
				onReload(err)
			}
		}
	}
}
