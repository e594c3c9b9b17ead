package main

import (
	"bytes"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/template"

	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/rules"
)

// This file is `mcpguard policy init`: a first policy in a minute, either
// a commented preset for a popular server or a deny-by-default skeleton
// written from the tools a server lists.

//go:embed presets/*.yaml
var presetFiles embed.FS

// presetNames are the presets, in the order help lists them.
var presetNames = []string{"filesystem", "fetch", "git", "github", "everything"}

// initOptions is everything `policy init` can be told.
type initOptions struct {
	Preset string
	Roots  []string
	Hosts  []string
	Owners []string
	Writes bool
	Output string
	Force  bool
	From   bool
	server serverFlags
}

func newPolicyInitCmd() *cobra.Command {
	var o initOptions
	cmd := &cobra.Command{
		Use:   "init (--preset NAME | --from -- CMD ARGS) [-o FILE]",
		Short: "Write a first policy: a preset for a popular server, or a skeleton from a server's tools",
		Long: `Writes a commented ToolPolicy to stdout, or to -o FILE.

--preset NAME writes the policy of a popular MCP server, from its real tool
list: ` + strings.Join(presetNames, ", ") + `. filesystem and git confine paths to the
--root directories (default: the current one; ~ and $HOME expand when the
policy loads); fetch allows public https URLs (--host to list the hosts);
github allows reading (--owner to confine it to some owners). Tools that
change things are denied unless --allow-writes.

--from -- CMD ARGS starts CMD as a stdio MCP server (as a client would launch
it), lists its tools and writes a deny-by-default skeleton: every tool with
its description and the JSON pointer of each argument, denied until you
review it (--upstream URL does the same for a Streamable HTTP server).`,
		RunE: func(cmd *cobra.Command, args []string) error {
			rest, err := o.server.resolve(cmd, args, false)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			if len(rest) > 0 {
				return &exitError{exitUsage, fmt.Errorf("unexpected argument %q", rest[0])}
			}
			if o.From && len(o.server.argv) == 0 {
				return &exitError{exitUsage, errors.New("--from: put the stdio server's command last, after --")}
			}
			var policy []byte
			switch {
			case o.Preset != "" && o.server.set():
				return &exitError{exitUsage, errors.New("--preset and a server (--from -- CMD, --upstream URL) exclude each other: choose one")}
			case o.Preset != "":
				if policy, err = renderPreset(o); err != nil {
					return &exitError{exitUsage, err}
				}
			case o.server.set():
				defs, err := o.server.listTools(cmd.Context())
				if err != nil {
					return &exitError{exitUsage, err}
				}
				if policy, err = skeleton(o.server.describe(), defs); err != nil {
					return &exitError{exitUsage, err}
				}
			default:
				return &exitError{exitUsage, fmt.Errorf("say what to start from: --preset NAME (%s), or --from -- CMD ARGS", strings.Join(presetNames, ", "))}
			}
			if err := validatePolicy(policy); err != nil {
				return &exitError{exitUsage, fmt.Errorf("the policy written does not load (a bug in mcpguard): %v", err)}
			}
			if o.Output == "" || o.Output == "-" {
				_, err := cmd.OutOrStdout().Write(policy)
				return err
			}
			return writeNewFile(o.Output, policy, o.Force, cmd.ErrOrStderr())
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Preset, "preset", "", "write the policy of a popular server: "+strings.Join(presetNames, ", "))
	f.BoolVar(&o.From, "from", false, "start the stdio server given after -- and write a skeleton from its tools")
	f.StringArrayVar(&o.Roots, "root", nil, "a directory the filesystem or git server may use (repeatable; default: the current directory)")
	f.StringArrayVar(&o.Hosts, "host", nil, "for fetch: a host the agent may fetch from (repeatable; default: any public host)")
	f.StringArrayVar(&o.Owners, "owner", nil, "for github: a user or organisation whose repositories may be used (repeatable; default: any)")
	f.BoolVar(&o.Writes, "allow-writes", false, "also allow the tools that change things (within the roots or owners)")
	f.StringVarP(&o.Output, "output", "o", "", "write the policy to FILE (not over an existing file unless --force)")
	f.BoolVar(&o.Force, "force", false, "overwrite --output if it exists")
	o.server.flags(cmd, "write a skeleton from the tools this Streamable HTTP server lists")
	return cmd
}

// presetData is what the preset templates read.
type presetData struct {
	Writes                 bool
	Roots, Hosts, Owners   []string
	RootsYAML, RootsText   string
	HostsYAML, HostsText   string
	OwnersYAML, OwnersText string

	ReadPath, WritePath []string // filesystem
	ReadRepo, WriteRepo []gitTool
	Read, Search, Write []string // github
}

type gitTool struct {
	Tool      string
	Revisions []string // arguments git reads as revisions or branch names
}

func renderPreset(o initOptions) ([]byte, error) {
	if !slices.Contains(presetNames, o.Preset) {
		return nil, fmt.Errorf("--preset %q: not one of %s (or write a skeleton from any server with --from -- CMD ARGS)", o.Preset, strings.Join(presetNames, ", "))
	}
	d := presetData{Writes: o.Writes, Hosts: o.Hosts, Owners: o.Owners}
	if len(o.Roots) == 0 {
		wd, err := os.Getwd()
		if err != nil {
			return nil, err
		}
		o.Roots = []string{wd}
	}
	for _, r := range o.Roots {
		// ~ and $HOME stay as written (the policy expands them when it
		// loads, so it travels between machines); anything else relative
		// is made absolute here.
		if r != "~" && !strings.HasPrefix(r, "~/") && !strings.HasPrefix(r, "$HOME") && !filepath.IsAbs(r) {
			abs, err := filepath.Abs(r)
			if err != nil {
				return nil, err
			}
			r = abs
		}
		d.Roots = append(d.Roots, r)
	}
	d.RootsYAML, d.RootsText = yamlList(d.Roots), strings.Join(d.Roots, ", ")
	d.HostsYAML, d.HostsText = yamlList(d.Hosts), strings.Join(d.Hosts, ", ")
	d.OwnersYAML, d.OwnersText = yamlList(d.Owners), strings.Join(d.Owners, ", ")
	switch o.Preset {
	case "filesystem":
		d.ReadPath = []string{"read_text_file", "read_file", "read_media_file", "list_directory", "list_directory_with_sizes", "directory_tree", "search_files", "get_file_info"}
		d.WritePath = []string{"write_file", "edit_file", "create_directory"}
	case "git":
		d.ReadRepo = []gitTool{{"git_status", nil}, {"git_diff_unstaged", nil}, {"git_diff_staged", nil},
			{"git_diff", []string{"target"}}, {"git_log", nil}, {"git_show", []string{"revision"}}, {"git_branch", []string{"contains", "not_contains"}}}
		d.WriteRepo = []gitTool{{"git_add", nil}, {"git_commit", nil}, {"git_reset", nil},
			{"git_create_branch", []string{"branch_name", "base_branch"}}, {"git_checkout", []string{"branch_name"}}}
	case "github":
		d.Read = []string{"get_file_contents", "list_commits", "list_issues", "get_issue", "get_pull_request", "list_pull_requests",
			"get_pull_request_files", "get_pull_request_status", "get_pull_request_comments", "get_pull_request_reviews"}
		d.Search = []string{"search_repositories", "search_code", "search_issues", "search_users"}
		d.Write = []string{"create_or_update_file", "push_files", "create_issue", "update_issue", "add_issue_comment", "create_pull_request",
			"create_pull_request_review", "merge_pull_request", "update_pull_request_branch", "create_branch", "fork_repository"}
	}
	if o.Preset != "fetch" && len(o.Hosts) > 0 {
		return nil, fmt.Errorf("--host applies to the fetch preset, not %q", o.Preset)
	}
	if o.Preset != "github" && len(o.Owners) > 0 {
		return nil, fmt.Errorf("--owner applies to the github preset, not %q", o.Preset)
	}
	src, err := presetFiles.ReadFile("presets/" + o.Preset + ".yaml")
	if err != nil {
		return nil, err
	}
	t, err := template.New(o.Preset).Option("missingkey=error").Parse(string(src))
	if err != nil {
		return nil, err
	}
	var b bytes.Buffer
	if err := t.Execute(&b, d); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

// yamlList writes strings as a YAML flow sequence of double-quoted
// scalars (JSON strings are valid YAML).
func yamlList(ss []string) string {
	q := make([]string, len(ss))
	for i, s := range ss {
		q[i] = strconv.Quote(s)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

// skeleton writes a deny-by-default policy naming every tool of defs, each
// denied until reviewed, with its description and argument pointers as
// comments.
func skeleton(source string, defs []json.RawMessage) ([]byte, error) {
	type tool struct {
		Name        string `json:"name"`
		Description string `json:"description"`
		InputSchema struct {
			Properties map[string]struct {
				Type any `json:"type"`
			} `json:"properties"`
			Required []string `json:"required"`
		} `json:"inputSchema"`
		Annotations struct {
			ReadOnlyHint    *bool `json:"readOnlyHint"`
			DestructiveHint *bool `json:"destructiveHint"`
		} `json:"annotations"`
	}
	var tools []tool
	for _, d := range defs {
		var t tool
		if err := json.Unmarshal(d, &t); err != nil {
			return nil, fmt.Errorf("a tool definition does not decode: %v", err)
		}
		if !rules.ValidToolName(t.Name) {
			return nil, fmt.Errorf("the server lists a tool named %q, outside MCP's tool-name grammar; mcpguard would deny it anyway", t.Name)
		}
		tools = append(tools, t)
	}
	slices.SortFunc(tools, func(a, b tool) int { return strings.Compare(a.Name, b.Name) })
	var b bytes.Buffer
	fmt.Fprintf(&b, "# mcpguard policy skeleton for %s, written by `mcpguard policy init --from`\n", source)
	fmt.Fprintf(&b, "# from the %d tool(s) it lists. Every tool is denied until you review it:\n", len(tools))
	b.WriteString("# delete a rule's `action: deny` line to allow the tool, and confine its\n")
	b.WriteString("# arguments with checks (docs/policy.md, \"Checks\"). A tool the server adds\n")
	b.WriteString("# later is denied and hidden too (defaultAction: deny).\n")
	b.WriteString("apiVersion: mcpguard.dev/v1alpha1\nkind: ToolPolicy\nmetadata:\n  name: skeleton\nspec:\n  mode: enforce\n  defaultAction: deny\n")
	if len(tools) == 0 {
		b.WriteString("  tools: []\n")
		return b.Bytes(), nil
	}
	b.WriteString("  tools:\n")
	for _, t := range tools {
		desc, _, _ := strings.Cut(strings.TrimSpace(t.Description), "\n")
		if len(desc) > 100 {
			desc = desc[:97] + "..."
		}
		if desc != "" {
			fmt.Fprintf(&b, "    # %s: %s\n", t.Name, desc)
		}
		switch {
		case t.Annotations.ReadOnlyHint != nil && *t.Annotations.ReadOnlyHint:
			b.WriteString("    # the server says it only reads (readOnlyHint)\n")
		case t.Annotations.DestructiveHint != nil && *t.Annotations.DestructiveHint:
			b.WriteString("    # the server says it may destroy data (destructiveHint)\n")
		}
		var args []string
		for name := range t.InputSchema.Properties {
			args = append(args, name)
		}
		slices.Sort(args)
		if len(args) > 0 {
			b.WriteString("    # arguments:")
			for _, a := range args {
				ptr := "/" + strings.ReplaceAll(strings.ReplaceAll(a, "~", "~0"), "/", "~1")
				typ := ""
				if s, ok := t.InputSchema.Properties[a].Type.(string); ok {
					typ = " " + s
				}
				req := ""
				if slices.Contains(t.InputSchema.Required, a) {
					req = " required"
				}
				fmt.Fprintf(&b, " %s (%s)", ptr, strings.TrimSpace(typ+req))
			}
			b.WriteString("\n")
		}
		fmt.Fprintf(&b, "    - tool: %s\n      action: deny\n      reason: not reviewed yet\n", strconv.Quote(t.Name))
		if len(args) > 0 {
			b.WriteString("      # checks:\n")
			b.WriteString(exampleCheck(args))
		}
	}
	return b.Bytes(), nil
}

// exampleCheck is a commented check on the argument most worth confining:
// a path, a URL, or else the first.
func exampleCheck(args []string) string {
	for _, a := range args {
		l := strings.ToLower(a)
		switch {
		case strings.Contains(l, "path") || strings.Contains(l, "file") || strings.Contains(l, "dir"):
			return "      #   - argument: /" + a + "\n      #     path: {roots: [~/project]}\n"
		case strings.Contains(l, "url") || strings.Contains(l, "uri"):
			return "      #   - argument: /" + a + "\n      #     url: {schemes: [https], hosts: [example.com]}\n"
		}
	}
	return "      #   - argument: /" + args[0] + "\n      #     string: {maxLength: 1000}\n"
}

// validatePolicy loads a written policy as the proxy would.
func validatePolicy(policy []byte) error {
	dir, err := os.MkdirTemp("", "mcpguard-init-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "policy.yaml")
	if err := os.WriteFile(p, policy, 0o600); err != nil {
		return err
	}
	_, err = rules.Load(p)
	return err
}

// writeNewFile writes data to path, refusing to replace a file unless
// force, and creating the directory.
func writeNewFile(path string, data []byte, force bool, stderr io.Writer) error {
	if _, err := os.Stat(path); err == nil && !force {
		return &exitError{exitUsage, fmt.Errorf("%s exists; pass --force to replace it", path)}
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	if err := writeFileAtomic(path, data); err != nil {
		return err
	}
	fmt.Fprintf(stderr, "mcpguard: wrote %s\n", path)
	return nil
}
