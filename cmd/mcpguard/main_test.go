package main

import (
	"bytes"
	"slices"
	"strings"
	"testing"
)

// TestCommandNames: each lazily built command is found by the name it
// has once built, and the table holds every command.
func TestCommandNames(t *testing.T) {
	var names []string
	for _, c := range append(commands(), clusterCommands()...) {
		if got := c.build().Name(); got != c.name {
			t.Errorf("command %q builds a command named %q", c.name, got)
		}
		names = append(names, c.name)
	}
	var built []string
	for _, c := range newRootCmd().Commands() {
		if c.Name() != "help" && c.Name() != "completion" {
			built = append(built, c.Name())
		}
	}
	slices.Sort(names)
	if !slices.Equal(built, names) { // cobra sorts its commands
		t.Errorf("the full tree has %q, the table %q", built, names)
	}
}

// TestRootCmdFor: a command named first is the only one built, and reads
// the same as in the full tree; anything else builds them all (help,
// completion, suggestions for a mistyped name).
func TestRootCmdFor(t *testing.T) {
	all := len(newRootCmd().Commands())
	for _, tt := range []struct {
		args []string
		want int // commands in the tree
	}{
		{[]string{"proxy", "--upstream", "http://x/mcp"}, 1},
		{[]string{"policy", "check", "p.yaml"}, 1},
		{[]string{"deny", "7"}, 1},
		{[]string{"help", "proxy"}, all},
		{[]string{"--help"}, all},
		{[]string{"proxi"}, all},
		{nil, all},
	} {
		if got := len(rootCmdFor(tt.args).Commands()); got != tt.want {
			t.Errorf("rootCmdFor(%q): %d commands, want %d", tt.args, got, tt.want)
		}
	}

	run := func(lazy bool, args ...string) ([]byte, error) {
		root := newRootCmd()
		if lazy {
			root = rootCmdFor(args)
		}
		var out bytes.Buffer
		root.SetOut(&out)
		root.SetErr(&out)
		root.SetArgs(args)
		err := root.Execute()
		return out.Bytes(), err
	}
	for _, args := range [][]string{{"proxy", "--help"}, {"policy", "check", "--help"}, {"connect", "--help"}} {
		lazy, _ := run(true, args...)
		full, _ := run(false, args...)
		if len(full) == 0 || !bytes.Equal(lazy, full) {
			t.Errorf("%q: built alone it reads\n%s\nin the full tree\n%s", args, lazy, full)
		}
	}
	if _, err := run(true, "proxi"); err == nil || !strings.Contains(err.Error(), "Did you mean this?\n\tproxy") {
		t.Errorf("a mistyped command: %v, want a suggestion", err)
	}
}
