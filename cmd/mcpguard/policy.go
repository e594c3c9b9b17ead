package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"mcpguard.dev/mcpguard/rules"
)

// errAnswered ends a command whose answer ("denied", "changed") is already
// printed: main prints nothing more for an empty error.
var errAnswered = errors.New("")

// newPolicyCmd is `mcpguard policy`: the tools a policy author uses before
// a policy reaches a proxy. Exit codes: 0 yes (valid, allowed, passed,
// unchanged), 1 no (invalid, denied, failed, changed), 2 could not answer.
func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "Check, evaluate, test, replay and pin ToolPolicies",
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyEvalCmd(), newPolicyTestCmd(), newPolicyReplayCmd(), newPolicyPinCmd(), newPolicyInitCmd())
	return cmd
}

func newPolicyCheckCmd() *cobra.Command {
	var server serverFlags
	cmd := &cobra.Command{
		Use:   "check FILE... [--upstream URL | --upstream -- CMD ARGS]",
		Short: "Validate and lint policy files, listing every problem",
		Long: `Validates policy files (or directories of them) as the proxy would load
them, listing every error with file, line and field, then lints the valid
policy: rules that can never match, pins of tools no rule allows, URL checks
that leave userinfo open. With --upstream it also lists a live MCP server's
tools and warns about each one no rule matches (the default action decides
it): --upstream URL for a Streamable HTTP server, or --upstream -- CMD ARGS
to start a stdio server (as a client would launch it) and stop it after.
Exits 1 when there are errors; warnings alone do not fail the check.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			files, err := server.resolve(cmd, args, true)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			if len(files) == 0 {
				return &exitError{exitUsage, errors.New("name the policy file(s) to check")}
			}
			e, err := rules.Load(files...)
			if err != nil {
				var pe rules.PolicyErrors
				if errors.As(err, &pe) {
					for _, p := range pe {
						fmt.Fprintln(out, p)
					}
					return &exitError{exitFail, fmt.Errorf("%d problem(s) in %s", len(pe), strings.Join(files, " "))}
				}
				return &exitError{exitUsage, err}
			}
			warnings := e.Lint()
			if server.set() {
				defs, err := server.listTools(cmd.Context())
				if err != nil {
					return &exitError{exitUsage, err}
				}
				for _, name := range toolNames(defs) {
					// Ask as a listing does, without the definition: this is
					// about rules, not pins.
					d := e.Decide(cmd.Context(), rules.Input{Method: "tools/list", Tool: name})
					if d.Rule == "default" || d.Rule == "tool-name" {
						warnings = append(warnings, fmt.Sprintf("%s lists tool %q, which no rule matches: %s", server.describe(), name, d.Reason))
					}
				}
			}
			for _, w := range warnings {
				fmt.Fprintln(out, "warning:", w)
			}
			fmt.Fprintf(out, "ok: %s (mode %s)\n", strings.Join(files, " "), e.Mode())
			return nil
		},
	}
	server.flags(cmd, "also lint against the tools this MCP server lists: a Streamable HTTP URL, or -- CMD ARGS for a stdio server")
	return cmd
}

func parseHeaders(kvs []string) (http.Header, error) {
	h := http.Header{}
	for _, kv := range kvs {
		k, v, ok := strings.Cut(kv, ":")
		if !ok {
			return nil, fmt.Errorf("--header %q: write \"Name: value\"", kv)
		}
		h.Add(strings.TrimSpace(k), strings.TrimSpace(v))
	}
	return h, nil
}

// toolNames returns the names of listed tool definitions, in order.
func toolNames(defs []json.RawMessage) []string {
	names := make([]string, 0, len(defs))
	for _, d := range defs {
		var t struct {
			Name string `json:"name"`
		}
		_ = json.Unmarshal(d, &t)
		names = append(names, t.Name)
	}
	return names
}

// evalCall is one line of `policy eval` input.
type evalCall struct {
	Method    string          `json:"method"`
	Tool      string          `json:"tool"`
	Server    string          `json:"server"`
	Arguments json.RawMessage `json:"arguments"`
}

func newPolicyEvalCmd() *cobra.Command {
	var (
		policyFiles []string
		call        evalCall
		args        string
	)
	cmd := &cobra.Command{
		Use:   "eval --policy FILE [--tool NAME --args JSON]",
		Short: "Decide one call, or JSON lines of calls from stdin",
		Long: `Prints the decision as JSON ({"allow","rule","reason","mode"}) and exits 0
when allowed, 1 when denied, 2 on error. Without --tool it reads JSON lines
{"tool": ..., "arguments": ..., "method": ..., "server": ...} from stdin and
writes one decision per line; it then exits 1 if any call was denied.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if len(policyFiles) == 0 {
				return &exitError{exitUsage, errors.New("--policy is required")}
			}
			e, err := rules.Load(policyFiles...)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetEscapeHTML(false)
			ctx := cmd.Context()
			if call.Tool != "" || cmd.Flags().Changed("args") {
				call.Arguments = json.RawMessage(args)
				if !json.Valid(call.Arguments) {
					return &exitError{exitUsage, fmt.Errorf("--args %q is not valid JSON", args)}
				}
				d := e.Decide(ctx, call.input())
				if err := enc.Encode(d); err != nil {
					return &exitError{exitUsage, err}
				}
				if !d.Allow {
					return &exitError{exitFail, errAnswered}
				}
				return nil
			}
			return evalStream(ctx, e, cmd.InOrStdin(), enc)
		},
	}
	cmd.Flags().StringArrayVar(&policyFiles, "policy", nil, "policy file or directory (repeatable)")
	cmd.Flags().StringVar(&call.Tool, "tool", "", "tool name as the agent sees it")
	cmd.Flags().StringVar(&args, "args", "{}", "the call's arguments, a JSON object")
	cmd.Flags().StringVar(&call.Method, "method", "tools/call", "MCP method to decide")
	cmd.Flags().StringVar(&call.Server, "server", "", "upstream server name")
	return cmd
}

func (c evalCall) input() rules.Input {
	m := c.Method
	if m == "" {
		m = "tools/call"
	}
	return rules.Input{Method: m, Tool: c.Tool, Server: c.Server, Arguments: c.Arguments}
}

func evalStream(ctx context.Context, e *rules.Engine, r io.Reader, enc *json.Encoder) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	denied, bad := 0, 0
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" {
			continue
		}
		var c evalCall
		dec := json.NewDecoder(strings.NewReader(text))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			bad++
			if err := enc.Encode(struct {
				Line  int    `json:"line"`
				Error string `json:"error"`
			}{line, err.Error()}); err != nil {
				return &exitError{exitUsage, err}
			}
			continue
		}
		d := e.Decide(ctx, c.input())
		if !d.Allow {
			denied++
		}
		if err := enc.Encode(d); err != nil {
			return &exitError{exitUsage, err}
		}
	}
	switch {
	case sc.Err() != nil:
		return &exitError{exitUsage, sc.Err()}
	case bad > 0:
		return &exitError{exitUsage, fmt.Errorf("%d input line(s) were not calls", bad)}
	case denied > 0:
		return &exitError{exitFail, errAnswered}
	}
	return nil
}

func newPolicyTestCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "test PATH...",
		Short: "Run policy test files (YAML cases: call → expected decision and rule)",
		Long: `Runs test files (or every *.yaml file of a directory). A test file names
the policy it tests and lists cases:

  policy: [../manifests/policies/approved-apis.yaml]
  cases:
    - name: metadata is denied
      tool: fetch_url
      arguments: {url: "http://169.254.169.254/"}
      want: {allow: false, rule: fetch_url/deny-ip-classes}

Prints each failure with what differs and exits 1 if any case failed.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			out := cmd.OutOrStdout()
			failed, total := 0, 0
			for _, p := range args {
				suites, err := rules.LoadTests(p)
				if err != nil {
					return &exitError{exitUsage, err}
				}
				for _, s := range suites {
					results, err := s.Run(cmd.Context())
					if err != nil {
						return &exitError{exitUsage, fmt.Errorf("%s: %w", s.File, err)}
					}
					sf := 0
					for _, r := range results {
						if r.Diff != "" {
							sf++
							fmt.Fprintf(out, "FAIL %s:%d: %s\n     %s\n", r.Suite, r.Line, r.Case, r.Diff)
						}
					}
					status := "ok  "
					if sf > 0 {
						status = "FAIL"
					}
					fmt.Fprintf(out, "%s %s: %d/%d passed\n", status, s.File, len(results)-sf, len(results))
					failed += sf
					total += len(results)
				}
			}
			if failed > 0 {
				return &exitError{exitFail, fmt.Errorf("%d of %d case(s) failed", failed, total)}
			}
			return nil
		},
	}
}

// logEntry is one line of the proxy's decision log, as replay reads it.
// Decision is "allow" or "deny" (a boolean is accepted too).
type logEntry struct {
	Time      string          `json:"time"`
	Msg       string          `json:"msg"`
	Session   string          `json:"session"`
	Method    string          `json:"method"`
	Tool      string          `json:"tool"`
	Server    string          `json:"server"`
	Decision  json.RawMessage `json:"decision"`
	Rule      string          `json:"rule"`
	Reason    string          `json:"reason"`
	Arguments json.RawMessage `json:"arguments"`
}

func (l *logEntry) allowed() (bool, error) {
	var s string
	if json.Unmarshal(l.Decision, &s) == nil {
		switch s {
		case "allow", "allowed":
			return true, nil
		case "deny", "denied":
			return false, nil
		}
	}
	var b bool
	if json.Unmarshal(l.Decision, &b) == nil {
		return b, nil
	}
	return false, fmt.Errorf("decision %s is neither \"allow\" nor \"deny\"", l.Decision)
}

func newPolicyReplayCmd() *cobra.Command {
	var policyFiles []string
	cmd := &cobra.Command{
		Use:   "replay --policy FILE LOG",
		Short: "Re-decide logged calls under a policy and report what would change",
		Long: `Reads the proxy's decision log (JSON lines with time, session, method, tool,
decision, rule, reason and, when the operator opted in, arguments; "-" for
stdin), decides each call again under --policy, and prints every call whose
decision would change. Lines that are not policy decisions are skipped. A
call logged without its arguments is decided exactly when its rule does not
look at arguments; otherwise it is "unknown" unless its tool is now denied
outright. Exits 1 when some decision would change.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(policyFiles) == 0 {
				return &exitError{exitUsage, errors.New("--policy is required")}
			}
			e, err := rules.Load(policyFiles...)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			var r io.Reader = cmd.InOrStdin()
			if args[0] != "-" {
				f, err := os.Open(args[0])
				if err != nil {
					return &exitError{exitUsage, err}
				}
				defer f.Close()
				r = f
			}
			return replay(cmd.Context(), e, r, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringArrayVar(&policyFiles, "policy", nil, "the new policy file or directory (repeatable)")
	return cmd
}

func replay(ctx context.Context, e *rules.Engine, r io.Reader, out io.Writer) error {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var replayed, changed, unknown int
	for line := 1; sc.Scan(); line++ {
		var l logEntry
		if err := json.Unmarshal(sc.Bytes(), &l); err != nil || l.Decision == nil || (l.Msg != "" && l.Msg != "policy decision") {
			continue
		}
		was, err := l.allowed()
		if err != nil {
			return &exitError{exitUsage, fmt.Errorf("line %d: %w", line, err)}
		}
		in := rules.Input{Method: l.Method, Tool: l.Tool, Server: l.Server, Session: l.Session, Arguments: l.Arguments}
		if in.Method == "" {
			in.Method = "tools/call"
		}
		if in.Method == rules.MethodToolResult {
			continue // a result's content is never logged: nothing to re-decide
		}
		replayed++
		if in.Method == "tools/call" && l.Arguments == nil && !e.DecidesWithoutArguments(in) {
			// The decision depends on arguments that were not logged: say
			// what can be said from the tool alone.
			in.Method = "tools/list"
			if d := e.Decide(ctx, in); d.Allow {
				unknown++
				fmt.Fprintf(out, "unknown  line %d %s session %s %s: was %s (%s); rule %q now decides on arguments, which were not logged\n",
					line, l.Time, l.Session, l.Tool, verdict(was), l.Rule, d.Rule)
				continue
			}
		}
		if d := e.Decide(ctx, in); d.Allow != was {
			changed++
			fmt.Fprintf(out, "changed  line %d %s session %s %s: %s (%s) → %s (%s): %s\n",
				line, l.Time, l.Session, l.Tool, verdict(was), l.Rule, verdict(d.Allow), d.Rule, d.Reason)
		}
	}
	if err := sc.Err(); err != nil {
		return &exitError{exitUsage, err}
	}
	fmt.Fprintf(out, "%d decision(s) replayed: %d would change, %d unknown\n", replayed, changed, unknown)
	if changed > 0 {
		return &exitError{exitFail, errAnswered}
	}
	return nil
}

func verdict(allow bool) string {
	if allow {
		return "allow"
	}
	return "deny"
}

func newPolicyPinCmd() *cobra.Command {
	var (
		server   serverFlags
		onChange string
	)
	cmd := &cobra.Command{
		Use:   "pin --upstream URL | pin -- CMD ARGS",
		Short: "Print pins for every tool a live MCP server lists",
		Long: `Connects to an MCP server, lists its tools and prints a spec.pins block with
the PinHash of each definition (name, description, inputSchema) exactly as the
server sent it: --upstream URL for a Streamable HTTP server, or -- CMD ARGS to
start a stdio server (as a client would launch it) and stop it after. Review
the tools before pasting the block into a policy: a pin approves a definition.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			rest, err := server.resolve(cmd, args, false)
			if err != nil {
				return &exitError{exitUsage, err}
			}
			if len(rest) > 0 {
				return &exitError{exitUsage, fmt.Errorf("unexpected argument %q: the server command goes after --", rest[0])}
			}
			if !server.set() {
				return &exitError{exitUsage, errors.New("name the server: --upstream URL, or -- CMD ARGS for a stdio server")}
			}
			if onChange != "hide" && onChange != "block" {
				return &exitError{exitUsage, fmt.Errorf("--on-change %q: write hide or block", onChange)}
			}
			defs, err := server.listTools(cmd.Context())
			if err != nil {
				return &exitError{exitUsage, err}
			}
			return writePins(cmd.OutOrStdout(), server.describe(), onChange, defs)
		},
	}
	server.flags(cmd, "MCP server URL (Streamable HTTP); for a stdio server put -- CMD ARGS last instead")
	cmd.Flags().StringVar(&onChange, "on-change", "hide", "what the proxy does with a changed tool: hide or block")
	return cmd
}

func writePins(w io.Writer, upstream, onChange string, defs []json.RawMessage) error {
	type pin struct{ name, hash string }
	var pins []pin
	for _, d := range defs {
		var t struct {
			Name string `json:"name"`
		}
		if err := json.Unmarshal(d, &t); err != nil || !rules.ValidToolName(t.Name) {
			return &exitError{exitUsage, fmt.Errorf("the server lists a tool named %q, outside MCP's tool-name grammar; mcpguard would deny it anyway", t.Name)}
		}
		h, err := rules.PinHash(d)
		if err != nil {
			return &exitError{exitUsage, fmt.Errorf("tool %q: %w", t.Name, err)}
		}
		pins = append(pins, pin{t.Name, h})
	}
	slices.SortFunc(pins, func(a, b pin) int { return strings.Compare(a.name, b.name) })
	fmt.Fprintf(w, "# Pins of the %d tool(s) %s listed at %s.\n", len(pins), upstream, time.Now().UTC().Format(time.RFC3339))
	fmt.Fprintln(w, "# A pin approves a definition: review each tool before adding this to spec.")
	fmt.Fprintln(w, "pins:")
	fmt.Fprintf(w, "  onChange: %s\n", onChange)
	fmt.Fprintln(w, "  tools:")
	for _, p := range pins {
		fmt.Fprintf(w, "    %s: %s\n", p.name, p.hash)
	}
	return nil
}
