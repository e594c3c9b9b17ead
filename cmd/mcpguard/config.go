package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
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
	// Policy holds FILE (every server's policy) and NAME=FILE (server
	// NAME's) values of --policy.
	Policy     []string
	AllowAll   bool
	Client     string
	Servers    []string
	Write      bool
	ConfigFile string
	Mcpguard   string // the binary the client should launch
	NoKeyring  bool
	NoTraces   bool
}

func newConfigCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Set MCP clients up to use mcpguard",
	}
	cmd.AddCommand(newConfigWrapCmd(), newConfigUnwrapCmd())
	return cmd
}

func newConfigWrapCmd() *cobra.Command {
	var o configWrapOptions
	cmd := &cobra.Command{
		Use:   "wrap --client NAME --policy [SERVER=]FILE... [--server NAME] [--write]",
		Short: "Put an MCP client's servers behind the policy (mcpguard wrap / connect)",
		Long: `Rewrite the server entries of an MCP client's configuration so the client
launches "mcpguard wrap --policy FILE -- CMD ARGS" where it launched "CMD ARGS",
and "mcpguard connect --policy FILE URL" where it connected to URL itself (a
remote entry with "headers" is left for you to convert, with --token-env).

--policy SERVER=FILE gives server SERVER its policy; --policy FILE gives every
other server one. A server with no policy is left untouched, with a warning.
Each wrapped server gets a loopback admin listener on a free port, which
"mcpguard traces --server NAME" finds. Secrets in a server's "env" (names
with TOKEN, SECRET, PASSWORD, KEY...) move to the OS keyring, from which wrap
reads them back; where no keyring is available they stay, with a warning.

Without --write, print the rewritten entries; with --write, rewrite the file in
place after copying it to FILE.bak-<time>. Only the converted entries' bytes
change: comments (JSONC, as VS Code writes), formatting and every other key
stay as they were. "mcpguard config unwrap" puts the original entries back
byte for byte. Entries already wrapped are left as they are.

Clients and the files looked for, first found wins:
  claude-desktop  <user config dir>/Claude/claude_desktop_config.json   (mcpServers)
  cursor          .cursor/mcp.json, ~/.cursor/mcp.json                   (mcpServers)
  vscode          .vscode/mcp.json, <user config dir>/Code/User/mcp.json (servers)
  claude-code     .mcp.json, ~/.claude.json (also projects.<cwd>)        (mcpServers)`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConfigWrap(o, cmd.OutOrStdout(), cmd.ErrOrStderr(), time.Now())
		},
	}
	f := cmd.Flags()
	f.StringArrayVar(&o.Policy, "policy", nil, "policy FILE for every server, or SERVER=FILE for one (repeatable)")
	f.BoolVar(&o.AllowAll, "allow-all", false, "wrap the servers without a policy: everything forwarded, logged and traced (loudly unsafe)")
	f.StringVar(&o.Client, "client", "", "the MCP client: "+clientNames())
	f.StringArrayVar(&o.Servers, "server", nil, "the server entries to convert (repeatable; default: every one)")
	f.BoolVar(&o.Write, "write", false, "rewrite the configuration file in place (after a backup)")
	f.StringVar(&o.ConfigFile, "config-file", "", "the configuration file (default: the client's, see above)")
	f.StringVar(&o.Mcpguard, "mcpguard", "", "path of the mcpguard binary the client should launch (default: this one)")
	f.BoolVar(&o.NoKeyring, "no-keyring", false, "leave secrets in the file's \"env\" rather than moving them to the OS keyring")
	f.BoolVar(&o.NoTraces, "no-admin", false, "do not give each wrapped server a loopback admin listener (traces)")
	_ = cmd.MarkFlagRequired("client")
	return cmd
}

// findClientFile returns the client and the file to edit.
func findClientFile(clientName, configFile string) (mcpClient, string, error) {
	i := slices.IndexFunc(mcpClients, func(c mcpClient) bool { return c.name == clientName })
	if i < 0 {
		return mcpClient{}, "", fmt.Errorf("client: %q is not one of %s", clientName, clientNames())
	}
	client := mcpClients[i]
	path := configFile
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
	abs, err := filepath.Abs(path)
	if err != nil {
		return client, "", err
	}
	return client, abs, nil
}

func runConfigWrap(o configWrapOptions, stdout, stderr io.Writer, now time.Time) error {
	usage := func(err error) error { return &exitError{code: exitUsage, err: err} }
	client, path, err := findClientFile(o.Client, o.ConfigFile)
	if err != nil {
		return usage(err)
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
	// The policies: FILE for every server, NAME=FILE for one.
	var defaults []string
	perServer := map[string][]string{}
	for _, p := range o.Policy {
		name, file, isNamed := strings.Cut(p, "=")
		if !isNamed || strings.ContainsAny(name, `/\`) {
			name, file = "", p
		}
		abs, err := filepath.Abs(file)
		if err != nil {
			return usage(err)
		}
		if _, err := os.Stat(abs); err != nil {
			return usage(fmt.Errorf("policy: %v", err))
		}
		// A broken policy would only show when the client launches the
		// server, as a server that fails to start: say so now.
		if _, err := rules.Load(abs); err != nil {
			return usage(fmt.Errorf("policy: %v", err))
		}
		if name == "" {
			defaults = append(defaults, abs)
		} else {
			perServer[name] = append(perServer[name], abs)
		}
	}
	if o.AllowAll && len(defaults) > 0 {
		return usage(errors.New("--allow-all and a default --policy FILE exclude each other: choose one"))
	}
	if !o.AllowAll && len(defaults) == 0 && len(perServer) == 0 {
		return usage(errors.New("no policy: pass --policy FILE (every server) or --policy SERVER=FILE (see mcpguard policy init), or --allow-all"))
	}

	data, err := os.ReadFile(path)
	if err != nil {
		return usage(fmt.Errorf("reading %s's configuration: %v (pass --config-file PATH)", client.name, err))
	}
	file, err := parseClientFile(path, data, client.key, client.name == "claude-code")
	if err != nil {
		return usage(err)
	}
	for _, name := range append(slices.Clone(o.Servers), slices.Collect(maps.Keys(perServer))...) {
		if !slices.Contains(file.keys, name) {
			return usage(fmt.Errorf("%s: no server %q in %q (it has %s)", path, name, client.key, strings.Join(file.keys, ", ")))
		}
	}
	state, err := readState(path)
	if err != nil {
		return usage(err)
	}

	changed := &orderedObject{vals: map[string]any{}}
	var splices []splice
	var moved []string // keyring accounts written, undone on failure
	fail := func(err error) error {
		for _, a := range moved {
			_ = secretStore.del(a)
		}
		return err
	}
	keyringOK := !o.NoKeyring && o.Write
	for _, e := range file.entries {
		name := e.name
		if len(o.Servers) > 0 && !slices.Contains(o.Servers, name) {
			continue
		}
		entry, err := decodeEntry(e.raw)
		if err != nil {
			return fail(usage(fmt.Errorf("%s: server %q: %v", path, name, err)))
		}
		policies := perServer[name]
		if len(policies) == 0 {
			policies = defaults
		}
		if len(policies) == 0 && !o.AllowAll {
			fmt.Fprintf(stderr, "mcpguard: %s: leaving %q untouched: no policy for it (pass --policy %s=FILE)\n", path, name, name)
			continue
		}
		args := []any{"wrap", "--name", name}
		if !o.NoTraces {
			args = append(args, "--admin-listen", "127.0.0.1:0")
		}
		if len(policies) == 0 {
			args = append(args, "--allow-all")
		}
		for _, p := range policies {
			args = append(args, "--policy", p)
		}
		command, _ := entry.get("command").(string)
		if url, _ := entry.get("url").(string); command == "" && url != "" {
			// A remote server: the client speaks HTTP to it itself, so
			// it gets `mcpguard connect` as a stdio server instead.
			if entry.get("headers") != nil {
				fmt.Fprintf(stderr, "mcpguard: %s: skipping %q: a remote server with \"headers\"; use `mcpguard connect --token-env NAME %s` by hand\n", path, name, url)
				continue
			}
			args[0] = "connect"
			args = append(args, url)
			entry.remove("url")
			if entry.get("type") != nil {
				entry.set("type", "stdio")
			}
			entry.set("command", bin)
			entry.set("args", args)
		} else {
			if command == "" {
				fmt.Fprintf(stderr, "mcpguard: %s: skipping %q: neither a stdio server (\"command\") nor a remote one (\"url\")\n", path, name)
				continue
			}
			cmdArgs, err := stringArgs(entry.get("args"))
			if err != nil {
				return fail(usage(fmt.Errorf("%s: server %q: %v", path, name, err)))
			}
			if isWrapped(command, cmdArgs) {
				fmt.Fprintf(stderr, "mcpguard: %s: %q is already wrapped\n", path, name)
				continue
			}
			// Only the values that change are replaced inside the entry,
			// so its comments and layout stay: "command", "args", and
			// each secret of "env", which moves to the keyring and
			// leaves a note in its place (wrap sets the variable).
			item := &wrappedItem{Original: string(e.raw)}
			var inner, cuts []splice
			if env, ok := entry.get("env").(*orderedObject); ok && !o.NoKeyring {
				for _, k := range env.keys {
					v, isString := env.get(k).(string)
					if !isString || v == "" || !secretName(k) || strings.Contains(v, "${") {
						continue
					}
					span := e.env[k]
					if !keyringOK {
						if !o.Write {
							args = append(args, "--keyring-env", k+"=(moved with --write)")
							env.set(k, keyringNote)
						}
						continue
					}
					account := path + "#" + name + "/" + k
					if err := secretStore.set(account, string(e.raw[span[0]:span[1]])); err != nil {
						fmt.Fprintf(stderr, "mcpguard: %s: %q: leaving %s in the file: no OS keyring to move it to (%v)\n", path, name, k, err)
						keyringOK = false
						continue
					}
					moved = append(moved, account)
					args = append(args, "--keyring-env", k+"="+account)
					env.set(k, keyringNote)
					inner = append(inner, splice{span[0], span[1], []byte(`"` + keyringNote + `"`)})
					cuts = append(cuts, splice{span[0], span[1], nil})
					item.Secrets = append(item.Secrets, keptSecret{At: span[0], Account: account})
				}
				// The state keeps the original without its secrets.
				item.Original = string(applySplices(e.raw, slices.Clone(cuts)))
				for i := range item.Secrets {
					// Offsets into the cut original: earlier cuts shift them.
					at := item.Secrets[i].At
					for _, c := range cuts {
						if c.start < at {
							item.Secrets[i].At -= c.end - c.start
						}
					}
				}
			}
			args = append(args, "--", command)
			for _, a := range cmdArgs {
				args = append(args, a)
			}
			entry.set("command", bin)
			entry.set("args", args)
			cmdSpan := e.members["command"]
			binJSON, _ := marshalOrdered(bin)
			inner = append(inner, splice{cmdSpan[0], cmdSpan[1], bytes.TrimSpace(binJSON)})
			if argsSpan, ok := e.members["args"]; ok {
				newArgs, err := encodeEntry(args, data, e.start+argsSpan[0], e.raw[argsSpan[0]:argsSpan[1]])
				if err != nil {
					return fail(err)
				}
				inner = append(inner, splice{argsSpan[0], argsSpan[1], newArgs})
			} else {
				argsJSON, _ := encodeEntry(args, nil, 0, nil)
				inner = append(inner, splice{cmdSpan[1], cmdSpan[1], append([]byte(`, "args": `), argsJSON...)})
			}
			newRaw := applySplices(e.raw, inner)
			item.Wrapped = string(newRaw)
			state.Servers[name] = item
			splices = append(splices, splice{e.start, e.end, newRaw})
			changed.set(name, entry)
			continue
		}
		newRaw, err := encodeEntry(entry, data, e.start, e.raw)
		if err != nil {
			return fail(err)
		}
		state.Servers[name] = &wrappedItem{Original: string(e.raw), Wrapped: string(newRaw)}
		splices = append(splices, splice{e.start, e.end, newRaw})
		changed.set(name, entry)
	}

	snippet := &orderedObject{vals: map[string]any{}}
	snippet.set(client.key, changed)
	out, err := marshalOrdered(snippet)
	if err != nil {
		return fail(err)
	}
	if !o.Write {
		_, err := stdout.Write(out)
		return err
	}
	if len(changed.keys) == 0 {
		fmt.Fprintf(stderr, "mcpguard: %s: nothing to change\n", path)
		return nil
	}
	newData := applySplices(data, splices)
	backup := path + ".bak-" + now.UTC().Format("20060102T150405Z")
	if err := writeFileAtomic(backup, data); err != nil {
		return fail(fmt.Errorf("backing up %s: %v; nothing was changed", path, err))
	}
	if err := writeState(state); err != nil {
		return fail(fmt.Errorf("recording what unwrap needs: %v; nothing was changed", err))
	}
	if err := writeFileAtomic(path, newData); err != nil {
		return fail(fmt.Errorf("rewriting %s: %v; the original is unchanged", path, err))
	}
	fmt.Fprintf(stderr, "mcpguard: wrapped %s in %s (backup: %s); restart %s to apply; `mcpguard config unwrap --client %s` undoes it\n",
		strings.Join(changed.keys, ", "), path, backup, client.name, client.name)
	return nil
}

// configUnwrapOptions is everything `mcpguard config unwrap` can be told.
type configUnwrapOptions struct {
	Client     string
	Servers    []string
	ConfigFile string
}

func newConfigUnwrapCmd() *cobra.Command {
	var o configUnwrapOptions
	cmd := &cobra.Command{
		Use:   "unwrap --client NAME [--server NAME]",
		Short: "Put back the server entries config wrap replaced, byte for byte",
		Long: `Restore the server entries "mcpguard config wrap --write" replaced, exactly as
they were (secrets come back from the OS keyring, which then forgets them). An
entry edited since it was wrapped is left alone, with a warning.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return runConfigUnwrap(o, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Client, "client", "", "the MCP client: "+clientNames())
	f.StringArrayVar(&o.Servers, "server", nil, "the server entries to restore (repeatable; default: every one wrapped)")
	f.StringVar(&o.ConfigFile, "config-file", "", "the configuration file (default: the client's)")
	_ = cmd.MarkFlagRequired("client")
	return cmd
}

func runConfigUnwrap(o configUnwrapOptions, stderr io.Writer) error {
	usage := func(err error) error { return &exitError{code: exitUsage, err: err} }
	client, path, err := findClientFile(o.Client, o.ConfigFile)
	if err != nil {
		return usage(err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return usage(fmt.Errorf("reading %s's configuration: %v (pass --config-file PATH)", client.name, err))
	}
	file, err := parseClientFile(path, data, client.key, client.name == "claude-code")
	if err != nil {
		return usage(err)
	}
	state, err := readState(path)
	if err != nil {
		return usage(err)
	}
	if len(state.Servers) == 0 {
		return usage(fmt.Errorf("%s: nothing was wrapped here by mcpguard config wrap --write", path))
	}
	var splices []splice
	var restored []string
	var forget []string
	for _, e := range file.entries {
		item := state.Servers[e.name]
		if item == nil || (len(o.Servers) > 0 && !slices.Contains(o.Servers, e.name)) {
			continue
		}
		if string(e.raw) != item.Wrapped {
			fmt.Fprintf(stderr, "mcpguard: %s: leaving %q as it is: it changed since it was wrapped\n", path, e.name)
			continue
		}
		orig := []byte(item.Original)
		var puts []splice
		ok := true
		for _, s := range item.Secrets {
			lit, err := secretStore.get(s.Account)
			if err != nil {
				fmt.Fprintf(stderr, "mcpguard: %s: leaving %q wrapped: its secret %q is not in the OS keyring: %v\n", path, e.name, s.Account, err)
				ok = false
				break
			}
			puts = append(puts, splice{s.At, s.At, []byte(lit)})
			forget = append(forget, s.Account)
		}
		if !ok {
			continue
		}
		splices = append(splices, splice{e.start, e.end, applySplices(orig, puts)})
		restored = append(restored, e.name)
		delete(state.Servers, e.name)
	}
	if len(restored) == 0 {
		return &exitError{code: exitFail, err: fmt.Errorf("%s: nothing restored", path)}
	}
	if err := writeFileAtomic(path, applySplices(data, splices)); err != nil {
		return fmt.Errorf("rewriting %s: %v; the file is unchanged", path, err)
	}
	if err := writeState(state); err != nil {
		fmt.Fprintf(stderr, "mcpguard: updating %s: %v\n", statePath(path), err)
	}
	for _, a := range forget {
		_ = secretStore.del(a)
	}
	fmt.Fprintf(stderr, "mcpguard: restored %s in %s; restart %s to apply\n", strings.Join(restored, ", "), path, client.name)
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
