package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/rules"
)

// This file is `mcpguard config`: it finds an MCP client's configuration
// and rewrites its stdio server entries so that the client launches
// `mcpguard wrap --policy FILE -- CMD ARGS` where it launched CMD ARGS. It
// also finds `mcpguard proxy`'s own configuration file on a laptop.

// mcpClient is one MCP client's configuration file: where it lives and the
// key holding its servers.
type mcpClient struct {
	name string
	key  string // "mcpServers", or "servers" for VS Code
	// paths are the candidate files, most specific first: the first that
	// exists is used, and the last is the one named when none does.
	paths func() []string
}

var mcpClients = []mcpClient{
	{name: "claude-desktop", key: "mcpServers", paths: func() []string {
		// %APPDATA%\Claude on Windows, ~/Library/Application
		// Support/Claude on macOS, $XDG_CONFIG_HOME/Claude on Linux.
		return []string{filepath.Join(userConfigDir(), "Claude", "claude_desktop_config.json")}
	}},
	{name: "cursor", key: "mcpServers", paths: func() []string {
		return []string{filepath.Join(".cursor", "mcp.json"), filepath.Join(homeDir(), ".cursor", "mcp.json")}
	}},
	{name: "vscode", key: "servers", paths: func() []string {
		return []string{filepath.Join(".vscode", "mcp.json"), filepath.Join(userConfigDir(), "Code", "User", "mcp.json")}
	}},
	{name: "claude-code", key: "mcpServers", paths: func() []string {
		// Project scope (.mcp.json), then user scope (~/.claude.json).
		return []string{".mcp.json", filepath.Join(homeDir(), ".claude.json")}
	}},
}

func clientNames() string {
	var names []string
	for _, c := range mcpClients {
		names = append(names, c.name)
	}
	return strings.Join(names, ", ")
}

func userConfigDir() string {
	d, err := os.UserConfigDir()
	if err != nil {
		return filepath.Join(homeDir(), ".config")
	}
	return d
}

func homeDir() string {
	d, _ := os.UserHomeDir()
	return d
}

// configWrapOptions is everything `mcpguard config wrap` can be told.
type configWrapOptions struct {
	policyChoice
	Client     string
	Servers    []string
	Write      bool
	ConfigFile string
	Mcpguard   string // the binary the client should launch
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Set MCP clients up to use mcpguard",
	}
	cmd.AddCommand(newConfigWrapCmd())
	return cmd
}

func newConfigWrapCmd() *cobra.Command {
	var o configWrapOptions
	cmd := &cobra.Command{
		Use:   "wrap --client NAME --policy FILE [--server NAME] [--write]",
		Short: "Put an MCP client's servers behind the policy (mcpguard wrap / connect)",
		Long: `Rewrite the server entries of an MCP client's configuration so the client
launches "mcpguard wrap --policy FILE -- CMD ARGS" where it launched "CMD ARGS",
and "mcpguard connect --policy FILE URL" where it connected to URL itself (a
remote entry with "headers" is left for you to convert, with --token-env).
Without --write, print the rewritten entries; with --write, rewrite the file in
place after copying it to FILE.bak-<time>. Entries already wrapped are left as
they are, so running it twice changes nothing; a file that is not plain JSON
(comments, trailing commas, duplicate keys) is refused and left untouched.

Clients and the files looked for, first found wins:
  claude-desktop  <user config dir>/Claude/claude_desktop_config.json   (mcpServers)
  cursor          .cursor/mcp.json, ~/.cursor/mcp.json                   (mcpServers)
  vscode          .vscode/mcp.json, <user config dir>/Code/User/mcp.json (servers)
  claude-code     .mcp.json, ~/.claude.json (also projects.<cwd>)        (mcpServers)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := o.check(); err != nil {
				return &exitError{code: exitUsage, err: err}
			}
			return runConfigWrap(o, cmd.OutOrStdout(), cmd.ErrOrStderr(), time.Now())
		},
	}
	o.flags(cmd)
	f := cmd.Flags()
	f.StringVar(&o.Client, "client", "", "the MCP client: "+clientNames())
	f.StringSliceVar(&o.Servers, "server", nil, "the server entries to convert (default: every one)")
	f.BoolVar(&o.Write, "write", false, "rewrite the configuration file in place (after a backup)")
	f.StringVar(&o.ConfigFile, "config-file", "", "the configuration file (default: the client's, see above)")
	f.StringVar(&o.Mcpguard, "mcpguard", "", "path of the mcpguard binary the client should launch (default: this one)")
	_ = cmd.MarkFlagRequired("client")
	return cmd
}

func runConfigWrap(o configWrapOptions, stdout, stderr io.Writer, now time.Time) error {
	usage := func(err error) error { return &exitError{code: exitUsage, err: err} }
	i := slices.IndexFunc(mcpClients, func(c mcpClient) bool { return c.name == o.Client })
	if i < 0 {
		return usage(fmt.Errorf("client: %q is not one of %s", o.Client, clientNames()))
	}
	client := mcpClients[i]
	path := o.ConfigFile
	if path == "" {
		candidates := client.paths()
		path = candidates[len(candidates)-1]
		for _, c := range candidates {
			if _, err := os.Stat(c); err == nil {
				path = c
				break
			}
		}
	}
	bin := o.Mcpguard
	if bin == "" {
		exe, err := os.Executable()
		if err != nil {
			return usage(fmt.Errorf("finding this binary (pass --mcpguard PATH): %v", err))
		}
		if resolved, err := filepath.EvalSymlinks(exe); err == nil {
			exe = resolved
		}
		bin = exe
	}
	var policies []string
	for _, p := range o.Policy {
		abs, err := filepath.Abs(p)
		if err != nil {
			return usage(err)
		}
		if _, err := os.Stat(abs); err != nil {
			return usage(fmt.Errorf("policy: %v", err))
		}
		policies = append(policies, abs)
	}
	if len(policies) > 0 {
		// A broken policy would only show when the client launches the
		// server, as a server that fails to start: say so now.
		if _, err := rules.Load(policies...); err != nil {
			return usage(fmt.Errorf("policy: %v", err))
		}
	}

	data, err := os.ReadFile(path)
	if err != nil {
		return usage(fmt.Errorf("reading %s's configuration: %v (pass --config-file PATH)", client.name, err))
	}
	root, err := parseOrdered(data)
	if err != nil {
		return usage(fmt.Errorf("%s is not plain JSON, so it is left untouched: %v", path, err))
	}
	doc, ok := root.(*orderedObject)
	if !ok {
		return usage(fmt.Errorf("%s: the top level is not a JSON object", path))
	}
	// The server objects to work on: the client's key at the top level,
	// and for Claude Code also its local scope, the current project's
	// entry under "projects" in ~/.claude.json (where `claude mcp add`
	// puts servers by default).
	var scopes []*orderedObject
	if top, ok := doc.get(client.key).(*orderedObject); ok {
		scopes = append(scopes, top)
	}
	if client.name == "claude-code" {
		if cwd, err := os.Getwd(); err == nil {
			if projects, ok := doc.get("projects").(*orderedObject); ok {
				if project, ok := projects.get(cwd).(*orderedObject); ok {
					if local, ok := project.get(client.key).(*orderedObject); ok {
						scopes = append(scopes, local)
					}
				}
			}
		}
	}
	if len(scopes) == 0 {
		return usage(fmt.Errorf("%s: no %q object of servers", path, client.key))
	}
	for _, name := range o.Servers {
		found := false
		var names []string
		for _, sc := range scopes {
			found = found || sc.get(name) != nil
			names = append(names, sc.keys...)
		}
		if !found {
			return usage(fmt.Errorf("%s: no server %q in %q (it has %s)", path, name, client.key, strings.Join(names, ", ")))
		}
	}

	wrapArgs := []any{"wrap"}
	if o.AllowAll {
		wrapArgs = append(wrapArgs, "--allow-all")
	}
	for _, p := range policies {
		wrapArgs = append(wrapArgs, "--policy", p)
	}
	wrapArgs = append(wrapArgs, "--")

	changed := &orderedObject{vals: map[string]any{}}
	for _, servers := range scopes {
		for _, name := range servers.keys {
			if len(o.Servers) > 0 && !slices.Contains(o.Servers, name) {
				continue
			}
			entry, ok := servers.get(name).(*orderedObject)
			if !ok {
				return usage(fmt.Errorf("%s: server %q is not an object", path, name))
			}
			command, _ := entry.get("command").(string)
			if url, _ := entry.get("url").(string); command == "" && url != "" {
				// A remote server: the client speaks HTTP to it itself, so
				// it gets `mcpguard connect` as a stdio server instead.
				if entry.get("headers") != nil {
					fmt.Fprintf(stderr, "mcpguard: %s: skipping %q: a remote server with \"headers\"; use `mcpguard connect --token-env NAME %s` by hand\n", path, name, url)
					continue
				}
				connectArgs := slices.Clone(wrapArgs)
				connectArgs[0] = "connect"
				connectArgs[len(connectArgs)-1] = url // in place of "--"
				entry.remove("url")
				if entry.get("type") != nil {
					entry.set("type", "stdio")
				}
				entry.set("command", bin)
				entry.set("args", connectArgs)
				changed.set(name, entry)
				continue
			}
			if command == "" {
				fmt.Fprintf(stderr, "mcpguard: %s: skipping %q: neither a stdio server (\"command\") nor a remote one (\"url\")\n", path, name)
				continue
			}
			args, err := stringArgs(entry.get("args"))
			if err != nil {
				return usage(fmt.Errorf("%s: server %q: %v", path, name, err))
			}
			if isWrapped(command, args) {
				fmt.Fprintf(stderr, "mcpguard: %s: %q is already wrapped\n", path, name)
				continue
			}
			newArgs := append(slices.Clone(wrapArgs), command)
			for _, a := range args {
				newArgs = append(newArgs, a)
			}
			entry.set("command", bin)
			entry.set("args", newArgs)
			changed.set(name, entry)
		}
	}

	snippet := &orderedObject{vals: map[string]any{}}
	snippet.set(client.key, changed)
	out, err := marshalOrdered(snippet)
	if err != nil {
		return err
	}
	if !o.Write {
		_, err := stdout.Write(out)
		return err
	}
	if len(changed.keys) == 0 {
		fmt.Fprintf(stderr, "mcpguard: %s: nothing to change\n", path)
		return nil
	}
	newData, err := marshalOrdered(doc)
	if err != nil {
		return err
	}
	backup := path + ".bak-" + now.UTC().Format("20060102T150405Z")
	if err := writeFileAtomic(backup, data); err != nil {
		return fmt.Errorf("backing up %s: %v; nothing was changed", path, err)
	}
	if err := writeFileAtomic(path, newData); err != nil {
		return fmt.Errorf("rewriting %s: %v; the original is unchanged", path, err)
	}
	fmt.Fprintf(stderr, "mcpguard: wrapped %s in %s (backup: %s); restart %s to apply\n",
		strings.Join(changed.keys, ", "), path, backup, client.name)
	return nil
}

// isWrapped reports whether a server entry already launches mcpguard wrap.
func isWrapped(command string, args []string) bool {
	base := strings.TrimSuffix(filepath.Base(command), ".exe")
	return base == "mcpguard" && len(args) > 0 && (args[0] == "wrap" || args[0] == "connect")
}

func stringArgs(v any) ([]string, error) {
	if v == nil {
		return nil, nil
	}
	arr, ok := v.([]any)
	if !ok {
		return nil, errors.New(`"args" is not an array`)
	}
	out := make([]string, 0, len(arr))
	for i, a := range arr {
		s, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf(`"args"[%d] is not a string`, i)
		}
		out = append(out, s)
	}
	return out, nil
}

// writeFileAtomic replaces path with data through a temporary file in the
// same directory, keeping an existing file's permissions.
func writeFileAtomic(path string, data []byte) error {
	mode := os.FileMode(0o600)
	if st, err := os.Stat(path); err == nil {
		mode = st.Mode().Perm()
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// orderedObject is a JSON object that keeps its keys in file order, so a
// rewritten configuration differs from the user's only where it must.
type orderedObject struct {
	keys []string
	vals map[string]any // *orderedObject, []any, string, json.Number, bool or nil
}

func (o *orderedObject) get(k string) any { return o.vals[k] }

func (o *orderedObject) remove(k string) {
	if _, ok := o.vals[k]; ok {
		delete(o.vals, k)
		o.keys = slices.DeleteFunc(o.keys, func(s string) bool { return s == k })
	}
}

func (o *orderedObject) set(k string, v any) {
	if _, ok := o.vals[k]; !ok {
		o.keys = append(o.keys, k)
	}
	o.vals[k] = v
}

// parseOrdered decodes one JSON value strictly: no comments, no trailing
// data, no duplicate keys.
func parseOrdered(data []byte) (any, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := decodeOrdered(dec)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("data after the top-level value at byte %d", dec.InputOffset())
	}
	return v, nil
}

func decodeOrdered(dec *json.Decoder) (any, error) {
	tok, err := dec.Token()
	if err != nil {
		return nil, err
	}
	switch t := tok.(type) {
	case json.Delim:
		switch t {
		case '{':
			obj := &orderedObject{vals: map[string]any{}}
			for dec.More() {
				kt, err := dec.Token()
				if err != nil {
					return nil, err
				}
				k := kt.(string)
				if _, dup := obj.vals[k]; dup {
					return nil, fmt.Errorf("duplicate key %q at byte %d", k, dec.InputOffset())
				}
				v, err := decodeOrdered(dec)
				if err != nil {
					return nil, err
				}
				obj.set(k, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return obj, nil
		case '[':
			arr := []any{}
			for dec.More() {
				v, err := decodeOrdered(dec)
				if err != nil {
					return nil, err
				}
				arr = append(arr, v)
			}
			if _, err := dec.Token(); err != nil {
				return nil, err
			}
			return arr, nil
		}
		return nil, fmt.Errorf("unexpected %v at byte %d", t, dec.InputOffset())
	default:
		return t, nil
	}
}

// marshalOrdered encodes v with two-space indentation (what every one of
// these clients writes), keys in order, no HTML escaping, and a final
// newline.
func marshalOrdered(v any) ([]byte, error) {
	var compact bytes.Buffer
	if err := appendOrdered(&compact, v); err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, compact.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

func appendOrdered(b *bytes.Buffer, v any) error {
	switch t := v.(type) {
	case *orderedObject:
		b.WriteByte('{')
		for i, k := range t.keys {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := appendOrdered(b, k); err != nil {
				return err
			}
			b.WriteByte(':')
			if err := appendOrdered(b, t.vals[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range t {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := appendOrdered(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		enc := json.NewEncoder(b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(t); err != nil {
			return err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
	}
	return nil
}

// discoverProxyConfig finds `mcpguard proxy`'s configuration on a laptop
// when neither --config nor MCPGUARD_CONFIG names one: ./mcpguard.yaml,
// then mcpguard/config.yaml in the user configuration directory
// ($XDG_CONFIG_HOME or ~/.config on Linux, ~/Library/Application Support on
// macOS, %AppData% on Windows). It returns "" when there is neither.
func discoverProxyConfig() string {
	candidates := []string{"mcpguard.yaml"}
	if dir, err := os.UserConfigDir(); err == nil {
		candidates = append(candidates, filepath.Join(dir, "mcpguard", "config.yaml"))
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return c
		}
	}
	return ""
}
