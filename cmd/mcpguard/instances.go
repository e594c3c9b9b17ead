package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"
)

// A running `mcpguard wrap` or `connect` with an admin listener records
// itself in a small file, so that `mcpguard traces --list` and `traces
// --server NAME` find it without being told its port (config wrap gives each
// server a free one). The file goes when the instance ends; a file whose
// instance no longer answers (it was killed) is removed by the next list.

// instance is one running mcpguard's admin listener.
type instance struct {
	Name    string    `json:"name"`
	PID     int       `json:"pid"`
	Admin   string    `json:"admin"` // http://127.0.0.1:PORT
	Started time.Time `json:"started"`
}

// instancesDir is where the instance files are: the user cache directory.
func instancesDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		dir = filepath.Join(homeDir(), ".cache")
	}
	return filepath.Join(dir, "mcpguard", "instances")
}

// registerInstance records this process's admin listener and returns the
// file to remove when it ends ("" when it could not be written, which only
// costs the listing).
func registerInstance(name, admin string, log *slog.Logger) string {
	in := instance{Name: name, PID: os.Getpid(), Admin: admin, Started: time.Now().UTC()}
	data, _ := json.Marshal(in)
	dir := instancesDir()
	path := filepath.Join(dir, fmt.Sprintf("%d.json", in.PID))
	if err := os.MkdirAll(dir, 0o700); err != nil {
		log.Warn("mcpguard traces --list will not find this instance", "err", err)
		return ""
	}
	if err := writeFileAtomic(path, data); err != nil {
		log.Warn("mcpguard traces --list will not find this instance", "err", err)
		return ""
	}
	return path
}

// runningInstances returns the instances that answer on their admin
// listener, oldest first, removing the files of those that do not.
func runningInstances(ctx context.Context) []instance {
	files, _ := filepath.Glob(filepath.Join(instancesDir(), "*.json"))
	client := &http.Client{Timeout: 2 * time.Second}
	var (
		mu  sync.Mutex
		out []instance
		wg  sync.WaitGroup
	)
	for _, f := range files {
		data, err := os.ReadFile(f)
		var in instance
		if err != nil || json.Unmarshal(data, &in) != nil || !strings.HasPrefix(in.Admin, "http://") {
			_ = os.Remove(f)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, http.MethodGet, in.Admin+"/healthz", nil)
			res, err := client.Do(req)
			if err != nil {
				_ = os.Remove(f)
				return
			}
			_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 4096))
			res.Body.Close()
			mu.Lock()
			out = append(out, in)
			mu.Unlock()
		}()
	}
	wg.Wait()
	slices.SortFunc(out, func(a, b instance) int { return a.Started.Compare(b.Started) })
	return out
}

// listInstances prints the running instances.
func listInstances(ctx context.Context, w io.Writer) error {
	ins := runningInstances(ctx)
	if len(ins) == 0 {
		fmt.Fprintln(w, "no running mcpguard with an admin listener (wrap and connect get one with --admin-listen 127.0.0.1:0; config wrap sets it)")
		return nil
	}
	fmt.Fprintf(w, "%-20s %-8s %-28s %s\n", "SERVER", "PID", "TRACES", "STARTED")
	for _, in := range ins {
		name := in.Name
		if name == "" {
			name = "-"
		}
		fmt.Fprintf(w, "%-20s %-8d %-28s %s\n", name, in.PID, in.Admin+"/traces", in.Started.Local().Format(time.DateTime))
	}
	return nil
}

// instanceAdmin returns the admin URL of the running instance named name
// (the newest, when the client started it more than once).
func instanceAdmin(ctx context.Context, name string) (string, error) {
	ins := runningInstances(ctx)
	var names []string
	for i := len(ins) - 1; i >= 0; i-- {
		if ins[i].Name == name {
			return ins[i].Admin, nil
		}
		if ins[i].Name != "" && !slices.Contains(names, ins[i].Name) {
			names = append(names, ins[i].Name)
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("server %q: no running mcpguard with an admin listener (is the client running, with the servers wrapped by config wrap?)", name)
	}
	slices.Sort(names)
	return "", fmt.Errorf("server %q is not running; running: %s", name, strings.Join(names, ", "))
}
