// Package testpeers finds the real MCP peers that scripts/test-deps.sh
// installs (npm servers, the inspector CLI, the conformance suite, Node 22,
// the Go reference servers) and loopback.cjs (kept beside this file), for the tests
// of every package that runs them. Tests call Need; a missing peer fails the
// test with the command that installs it, and only -short skips.
package testpeers

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// Peers is where scripts/test-deps.sh put the real MCP peers.
type Peers struct {
	Root               string // the repository (mcpguard's go.mod)
	NPMModules         string // node_modules holding the @modelcontextprotocol packages
	Node22             string // a Node 22 binary (the conformance suite needs it)
	ConformanceServers string // the Go SDKs' conformance reference servers and client
	Loopback           string // internal/testpeers/loopback.cjs: keeps Node servers on 127.0.0.1
	// SyncLoopback is internal/testpeers/loopback-sync.cjs, the same for
	// servers that read their address as soon as they listen (the
	// conformance suite's).
	SyncLoopback string
}

// Need returns the installed peers, or fails the test saying how to install
// them. Each location comes from its MCPGUARD_* variable or, when that is
// unset, from the .cache/test-deps.env the script writes.
func Need(t testing.TB) Peers {
	t.Helper()
	if testing.Short() {
		t.Skip("real MCP peers are not run under -short")
	}
	root := Root(t)
	file := readEnvFile(filepath.Join(root, ".cache", "test-deps.env"))
	get := func(name string) string {
		if v := os.Getenv(name); v != "" {
			return v
		}
		return file[name]
	}
	p := Peers{
		Root:               root,
		NPMModules:         get("MCPGUARD_NPM_PEERS"),
		Node22:             get("MCPGUARD_NODE22"),
		ConformanceServers: get("MCPGUARD_CONFORMANCE_SERVERS"),
	}
	for _, v := range []struct{ name, path string }{
		{"MCPGUARD_NPM_PEERS", p.NPMModules},
		{"MCPGUARD_NODE22", p.Node22},
		{"MCPGUARD_CONFORMANCE_SERVERS", p.ConformanceServers},
	} {
		if v.path == "" {
			t.Fatalf("%s is not set and %s/.cache/test-deps.env does not name it: run scripts/test-deps.sh first", v.name, root)
		}
		if _, err := os.Stat(v.path); err != nil {
			t.Fatalf("%s=%q: %v: run scripts/test-deps.sh first", v.name, v.path, err)
		}
	}
	p.Loopback = findPreload(t, root, "loopback.cjs")
	p.SyncLoopback = findPreload(t, root, "loopback-sync.cjs")
	return p
}

// NPMPackage returns the directory of an installed @modelcontextprotocol
// package, failing the test when it is not there.
func (p Peers) NPMPackage(t testing.TB, name string) string {
	t.Helper()
	dir := filepath.Join(p.NPMModules, "@modelcontextprotocol", name)
	if _, err := os.Stat(filepath.Join(dir, "package.json")); err != nil {
		t.Fatalf("@modelcontextprotocol/%s is not installed in %s (%v): run scripts/test-deps.sh first", name, p.NPMModules, err)
	}
	return dir
}

// Root is the directory holding mcpguard's go.mod.
func Root(t testing.TB) string {
	t.Helper()
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	for {
		if data, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.HasPrefix(data, []byte("module mcpguard.dev/mcpguard\n")) {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			t.Fatal("no go.mod for mcpguard.dev/mcpguard above the test's directory")
		}
		dir = parent
	}
}

// findPreload returns a Node preload kept beside this file, which the
// repository carries so that a fresh clone needs nothing outside it.
func findPreload(t testing.TB, root, name string) string {
	t.Helper()
	p := filepath.Join(root, "internal", "testpeers", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("the Node preload %s is missing (%v): it is part of the repository; restore it with git checkout", p, err)
	}
	return p
}

// readEnvFile reads KEY=VALUE lines; a missing file is an empty map.
func readEnvFile(path string) map[string]string {
	out := map[string]string{}
	data, err := os.ReadFile(path)
	if err != nil {
		return out
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		if k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "="); ok && !strings.HasPrefix(k, "#") {
			out[k] = v
		}
	}
	return out
}

// Buffer collects a child process's output from concurrent writers.
type Buffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *Buffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *Buffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
