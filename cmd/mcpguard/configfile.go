package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/tailscale/hujson"
	"github.com/zalando/go-keyring"
)

// This file is how `mcpguard config` edits a client's file without
// disturbing it: the file is parsed as JSONC (hujson: comments and
// trailing commas kept, as VS Code writes them), and each converted server
// entry's bytes are replaced in place, so everything else, comments and
// formatting included, stays byte for byte. What `config unwrap` needs to
// put the original entries back exactly is kept in a state file beside
// mcpguard's configuration, and the secrets moved out of "env" in the OS
// keyring.

// serverEntry is one server entry of a client's file, where it is.
type serverEntry struct {
	name       string
	start, end int    // its value's bytes in the file
	raw        []byte // data[start:end]
	// members is where each member's value lies, relative to start; env
	// the same for the members of "env".
	members map[string][2]int
	env     map[string][2]int
}

// clientFile is a client's configuration file, parsed.
type clientFile struct {
	path    string
	data    []byte
	entries []serverEntry // in file order, every scope
	keys    []string      // names of every entry, for messages
}

// parseClientFile parses data as JSONC and finds the server entries under
// key (and, for Claude Code, the local scope of the current directory).
func parseClientFile(path string, data []byte, key string, claudeCode bool) (*clientFile, error) {
	// JSON is UTF-8 (RFC 8259 §8.1); a file that is not would come back with
	// its stray bytes replaced, so unwrap could not restore it exactly
	// (found by FuzzConfigWrapUnwrap).
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%s is not valid UTF-8, so it is left untouched: save it as UTF-8 and run again", path)
	}
	root, err := hujson.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s is not JSON (comments and trailing commas are fine), so it is left untouched: %v", path, err)
	}
	if err := checkDuplicates(&root); err != nil {
		return nil, fmt.Errorf("%s is left untouched: %v", path, err)
	}
	if _, ok := root.Value.(*hujson.Object); !ok {
		return nil, fmt.Errorf("%s: the top level is not a JSON object", path)
	}
	f := &clientFile{path: path, data: data}
	var scopes []*hujson.Value
	if v := root.Find("/" + key); v != nil {
		scopes = append(scopes, v)
	}
	if claudeCode {
		if cwd, err := os.Getwd(); err == nil {
			ptr := "/projects/" + strings.ReplaceAll(strings.ReplaceAll(cwd, "~", "~0"), "/", "~1") + "/" + key
			if v := root.Find(ptr); v != nil {
				scopes = append(scopes, v)
			}
		}
	}
	if len(scopes) == 0 {
		return nil, fmt.Errorf("%s: no %q object of servers", path, key)
	}
	for _, sc := range scopes {
		obj, ok := sc.Value.(*hujson.Object)
		if !ok {
			return nil, fmt.Errorf("%s: %q is not an object", path, key)
		}
		for _, m := range obj.Members {
			name := m.Name.Value.(hujson.Literal).String()
			e := serverEntry{name: name, start: m.Value.StartOffset, end: m.Value.EndOffset}
			e.raw = data[e.start:e.end]
			if entry, ok := m.Value.Value.(*hujson.Object); ok {
				e.members = map[string][2]int{}
				for _, em := range entry.Members {
					e.members[em.Name.Value.(hujson.Literal).String()] = [2]int{em.Value.StartOffset - e.start, em.Value.EndOffset - e.start}
					if em.Name.Value.(hujson.Literal).String() != "env" {
						continue
					}
					if env, ok := em.Value.Value.(*hujson.Object); ok {
						e.env = map[string][2]int{}
						for _, v := range env.Members {
							e.env[v.Name.Value.(hujson.Literal).String()] = [2]int{v.Value.StartOffset - e.start, v.Value.EndOffset - e.start}
						}
					}
				}
			}
			f.entries = append(f.entries, e)
			f.keys = append(f.keys, name)
		}
	}
	return f, nil
}

// checkDuplicates refuses an object with a key twice: clients disagree on
// which one wins.
func checkDuplicates(v *hujson.Value) error {
	switch t := v.Value.(type) {
	case *hujson.Object:
		seen := map[string]bool{}
		for i := range t.Members {
			k := t.Members[i].Name.Value.(hujson.Literal).String()
			if seen[k] {
				return fmt.Errorf("duplicate key %q at byte %d", k, t.Members[i].Name.StartOffset)
			}
			seen[k] = true
			if err := checkDuplicates(&t.Members[i].Value); err != nil {
				return err
			}
		}
	case *hujson.Array:
		for i := range t.Elements {
			if err := checkDuplicates(&t.Elements[i]); err != nil {
				return err
			}
		}
	}
	return nil
}

// decodeEntry reads an entry's bytes (JSONC) as an ordered object.
func decodeEntry(raw []byte) (*orderedObject, error) {
	std, err := hujson.Standardize(slices.Clone(raw))
	if err != nil {
		return nil, err
	}
	v, err := parseOrdered(std)
	if err != nil {
		return nil, err
	}
	obj, ok := v.(*orderedObject)
	if !ok {
		return nil, errors.New("is not an object")
	}
	return obj, nil
}

// encodeEntry writes a new value in the style of the one it replaces: on
// one line when that was, else indented like the line it starts on.
func encodeEntry(e any, data []byte, start int, old []byte) ([]byte, error) {
	out, err := marshalOrdered(e)
	if err != nil {
		return nil, err
	}
	out = bytes.TrimSuffix(out, []byte("\n"))
	if !bytes.Contains(old, []byte("\n")) {
		var b bytes.Buffer
		if err := json.Compact(&b, out); err != nil {
			return nil, err
		}
		return bytes.ReplaceAll(bytes.ReplaceAll(b.Bytes(), []byte(`":`), []byte(`": `)), []byte(`,"`), []byte(`, "`)), nil
	}
	lineStart := bytes.LastIndexByte(data[:start], '\n') + 1
	indent := data[lineStart:start]
	indent = indent[:len(indent)-len(bytes.TrimLeft(indent, " \t"))]
	return bytes.ReplaceAll(out, []byte("\n"), append([]byte("\n"), indent...)), nil
}

// splice is a replacement of data[start:end].
type splice struct {
	start, end int
	with       []byte
}

// applySplices replaces the spans, which must not overlap.
func applySplices(data []byte, ss []splice) []byte {
	slices.SortFunc(ss, func(a, b splice) int { return a.start - b.start })
	var out bytes.Buffer
	at := 0
	for _, s := range ss {
		out.Write(data[at:s.start])
		out.Write(s.with)
		at = s.end
	}
	out.Write(data[at:])
	return out.Bytes()
}

// wrapState is what `config unwrap` needs for one client file: per server,
// the original entry (each secret cut out of it and kept in the keyring)
// and the wrapped entry written in its place.
type wrapState struct {
	File    string                  `json:"file"`
	Servers map[string]*wrappedItem `json:"servers"`
}

type wrappedItem struct {
	Original string       `json:"original"`
	Wrapped  string       `json:"wrapped"`
	Secrets  []keptSecret `json:"secrets,omitempty"`
}

// keptSecret is a secret's JSON string literal, cut from Original at At and
// kept in the keyring under Account.
type keptSecret struct {
	At      int    `json:"at"`
	Account string `json:"account"`
}

// statePath is where the state of one client file is kept.
func statePath(file string) string {
	sum := sha256.Sum256([]byte(file))
	return filepath.Join(userConfigDir(), "mcpguard", "wrapped", hex.EncodeToString(sum[:8])+".json")
}

func readState(file string) (*wrapState, error) {
	st := &wrapState{File: file, Servers: map[string]*wrappedItem{}}
	data, err := os.ReadFile(statePath(file))
	if errors.Is(err, os.ErrNotExist) {
		return st, nil
	}
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(data, st); err != nil {
		return nil, fmt.Errorf("%s: %v", statePath(file), err)
	}
	if st.Servers == nil {
		st.Servers = map[string]*wrappedItem{}
	}
	return st, nil
}

func writeState(st *wrapState) error {
	p := statePath(st.File)
	if len(st.Servers) == 0 {
		err := os.Remove(p)
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return err
	}
	data, err := json.MarshalIndent(st, "", "  ")
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	return writeFileAtomic(p, append(data, '\n'))
}

// keyringService is the OS keyring service mcpguard's secrets are kept
// under; the account names the client file, server and variable.
const keyringService = "mcpguard"

// secretStore is the OS keyring (a variable so tests can use go-keyring's
// in-memory provider where no keyring daemon runs).
var secretStore = struct {
	set func(account, secret string) error
	get func(account string) (string, error)
	del func(account string) error
}{
	set: func(a, s string) error { return keyring.Set(keyringService, a, s) },
	get: func(a string) (string, error) { return keyring.Get(keyringService, a) },
	del: func(a string) error { return keyring.Delete(keyringService, a) },
}

// secretName reports whether an environment variable's name says it holds
// a credential.
func secretName(name string) bool {
	n := strings.ToUpper(name)
	for _, w := range []string{"TOKEN", "SECRET", "PASSWORD", "PASSWD", "API_KEY", "APIKEY", "ACCESS_KEY", "PRIVATE_KEY", "CREDENTIAL", "_PAT", "AUTH"} {
		if strings.Contains(n, w) {
			return true
		}
	}
	return strings.HasSuffix(n, "_KEY")
}

// keyringEnv reads the secrets `wrap --keyring-env VAR=ACCOUNT` names back
// from the keyring, as VAR=value for the server's environment.
func keyringEnv(specs []string) ([]string, error) {
	var env []string
	for _, s := range specs {
		name, account, ok := strings.Cut(s, "=")
		if !ok || name == "" || account == "" {
			return nil, fmt.Errorf("keyring-env %q: write VAR=ACCOUNT", s)
		}
		lit, err := secretStore.get(account)
		if err != nil {
			return nil, fmt.Errorf("keyring-env %s: reading %q from the OS keyring (service %q): %v; run `mcpguard config unwrap` and wrap again", name, account, keyringService, err)
		}
		var v string
		if err := json.Unmarshal([]byte(lit), &v); err != nil {
			return nil, fmt.Errorf("keyring-env %s: the keyring item %q is not a JSON string", name, account)
		}
		env = append(env, name+"="+v)
	}
	return env, nil
}

// standardize turns JSONC into JSON.
func standardize(b []byte) ([]byte, error) { return hujson.Standardize(slices.Clone(b)) }

// keyringNote stands in the file where a secret was.
const keyringNote = "(in the OS keyring, service mcpguard: mcpguard wrap reads it; mcpguard config unwrap puts it back)"
