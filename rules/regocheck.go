package rules

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"
)

// Rego checks evaluate a query against the policy's Rego modules with the
// call as input:
//
//	input.method, input.tool (as the agent sees it), input.name (without
//	gateway prefix), input.prefix, input.server, input.arguments,
//	input.session, input.protocolVersion, input.identity.{namespace,
//	serviceAccount, pod, labels, subject}
//
// The query's value must be a decision document {"allow": bool, "reason":
// string, "rule": string}. Undefined, an evaluation error, or any other
// shape is a denial. How Rego combines with declarative checks: a Rego
// check is one check in a rule's list, and the first failing check decides,
// so declarative checks written before it deny first and Rego only sees
// calls they passed; Rego can deny what they allowed but never allow what
// they denied.
//
// This package holds those semantics; OPA itself is behind RegoBackend, so
// a binary that never meets a Rego policy need not link it (issue #18: OPA's
// package initialisation is a third of the sidecar's binary and 6–9 ms of
// CPU before ready). Package rules/rego is the in-process backend (OPA's
// compiler and evaluator, with the builtins mcpguard.url.parse,
// mcpguard.ip.classify, mcpguard.path.clean and mcpguard.path.within over
// this package's canonicaliser; builtins that reach the network refused at
// compile time); importing it registers it. Package rules/regoworker runs
// that backend in a child process (cmd/mcpguard-rego), for the sidecar
// build, which links no OPA.

// RegoBackend compiles a policy's Rego modules and the queries its checks
// make. Implementations must be safe for concurrent use.
type RegoBackend interface {
	// Compile compiles modules (at least one) and prepares every query in
	// queries against them. A problem in the policy is a RegoErrors, which
	// the engine reports at the module file's or policy file's line; any
	// other error (the backend cannot run) refuses the policy with its text.
	Compile(modules []RegoSource, queries []string) (RegoProgram, error)
}

// RegoProgram is a compiled set of modules and queries. Eval must be safe
// for concurrent use.
type RegoProgram interface {
	// Eval evaluates query, one of those compiled, with input and returns
	// the query's value for each result, as JSON values (objects as
	// map[string]any, numbers as json.Number). It stops when ctx ends.
	Eval(ctx context.Context, query string, input *RegoInput) ([]any, error)
}

// RegoSource is one Rego module of a policy: its name and its text.
type RegoSource struct {
	// Name is the module's file, or "policy-file#spec.rego.modules[i]" for a
	// module written inline; compile errors name it.
	Name string `json:"name"`
	Text string `json:"text"`
}

// RegoError is a problem a backend found in the modules or the queries.
type RegoError struct {
	// Module is the index of the module the problem is reported against
	// when its location names no module (a query's problem: 0).
	Module int `json:"module"`
	// File and Row locate it as OPA does: a module's Name and its row.
	// Empty when OPA gives no location.
	File string `json:"file,omitempty"`
	Row  int    `json:"row,omitempty"`
	// Code is OPA's error code ("rego_parse_error"); empty for a problem
	// OPA did not report as one of its errors, which is then reported
	// against the module's entry in the policy file.
	Code    string `json:"code,omitempty"`
	Message string `json:"message"`
}

// RegoErrors is every problem a backend found.
type RegoErrors []RegoError

func (es RegoErrors) Error() string {
	var b strings.Builder
	for i, e := range es {
		if i > 0 {
			b.WriteString("; ")
		}
		fmt.Fprintf(&b, "%s:%d: %s: %s", e.File, e.Row, e.Code, e.Message)
	}
	return b.String()
}

// RegoInput is the input document of one Rego check.
type RegoInput struct {
	Method, Tool    string
	Name, Prefix    string // the tool's name without the gateway prefix, and the prefix
	Server, Session string
	ProtocolVersion string
	Identity        Identity
	// Arguments is the call's arguments decoded (objects as map[string]any,
	// numbers as json.Number), and ArgumentsJSON the same as canonical
	// JSON: the backend takes whichever it needs.
	Arguments     any
	ArgumentsJSON json.RawMessage
}

var regoBackend struct {
	sync.RWMutex
	b RegoBackend
}

// SetRegoBackend sets what compiles and evaluates the Rego of every policy
// loaded after it. Importing rules/rego sets the in-process backend; the
// sidecar build sets rules/regoworker's. Without one, a policy with Rego
// modules is refused.
func SetRegoBackend(b RegoBackend) {
	regoBackend.Lock()
	defer regoBackend.Unlock()
	regoBackend.b = b
}

func currentRegoBackend() RegoBackend {
	regoBackend.RLock()
	defer regoBackend.RUnlock()
	return regoBackend.b
}

// regoModuleSource is a module as read, with where to report its errors.
type regoModuleSource struct {
	name  string
	text  string
	el    *errorList
	field string
	line  int // line of an inline module in the policy file
}

// compileRego compiles the policy's modules and queries with the backend.
func compileRego(mods []regoModuleSource, queries []string) (RegoProgram, PolicyErrors) {
	b := currentRegoBackend()
	if b == nil {
		m := mods[0]
		return nil, PolicyErrors{{File: m.el.file, Line: m.el.lines[m.field], Field: m.field,
			Message: "cannot be evaluated: this build of mcpguard has no Rego backend (link mcpguard.dev/mcpguard/rules/rego)"}}
	}
	in := make([]RegoSource, len(mods))
	for i, m := range mods {
		in[i] = RegoSource{Name: m.name, Text: m.text}
	}
	p, err := b.Compile(in, queries)
	if err == nil {
		return p, nil
	}
	var res RegoErrors
	if !errors.As(err, &res) {
		m := mods[0]
		return nil, PolicyErrors{{File: m.el.file, Line: m.el.lines[m.field], Field: m.field, Message: err.Error()}}
	}
	var out PolicyErrors
	for _, e := range res {
		m := mods[0]
		if e.Module >= 0 && e.Module < len(mods) {
			m = mods[e.Module]
		}
		if e.Code == "" {
			out = append(out, &PolicyError{File: m.el.file, Line: m.el.lines[m.field], Field: m.field, Message: e.Message})
			continue
		}
		pe := &PolicyError{File: m.name, Line: e.Row, Field: "rego", Message: e.Code + ": " + e.Message}
		if e.File != "" {
			pe.File = e.File
		}
		for _, src := range mods {
			if src.line > 0 && pe.File == src.name {
				// An inline module starts on the line after "inline: |".
				pe.File, pe.Line, pe.Field = src.el.file, src.line+pe.Line, src.field+".inline"
				break
			}
		}
		out = append(out, pe)
	}
	return nil, out
}

// regoBudget bounds one Rego check. A check takes microseconds; one that
// runs long (a policy whose cost grows with the arguments, which are the
// agent's to choose) is stopped and the call denied, instead of holding a
// core for as long as the call may last.
const regoBudget = 250 * time.Millisecond

// decideRego evaluates a Rego check.
func decideRego(env *evalEnv, c *check) (bool, string, string) {
	argsJSON, err := env.arguments()
	if err != nil {
		return false, c.id, fmt.Sprintf("arguments are not valid JSON: %v", err)
	}
	args, err := env.decodedArguments()
	if err != nil {
		return false, c.id, fmt.Sprintf("arguments are not valid JSON: %v", err)
	}
	if err := env.ctx.Err(); err != nil {
		// A backend may finish a short evaluation without looking at ctx; a
		// cancelled call is denied either way.
		return false, c.id, fmt.Sprintf("the call was cancelled before its Rego check: %v", err)
	}
	in := env.in
	input := &RegoInput{
		Method: in.Method, Tool: in.Tool, Name: env.name, Prefix: env.prefix,
		Server: in.Server, Session: in.Session, ProtocolVersion: in.ProtocolVersion,
		Identity: in.Identity, Arguments: args, ArgumentsJSON: argsJSON,
	}
	ctx, cancel := context.WithTimeout(env.ctx, regoBudget)
	defer cancel()
	values, err := env.c.rego.Eval(ctx, c.query, input)
	if err != nil {
		if errors.Is(ctx.Err(), context.DeadlineExceeded) && env.ctx.Err() == nil {
			return false, c.id, fmt.Sprintf("rego query %q took longer than %v; denied", c.query, regoBudget)
		}
		return false, c.id, fmt.Sprintf("rego query %q failed: %s", c.query, truncate(err.Error()))
	}
	if len(values) != 1 {
		return false, c.id, fmt.Sprintf("rego query %q is undefined; denied", c.query)
	}
	doc, ok := values[0].(map[string]any)
	allow, okAllow := doc["allow"].(bool)
	reason, okReason := doc["reason"].(string)
	rule, okRule := doc["rule"].(string)
	_, hasReason := doc["reason"]
	_, hasRule := doc["rule"]
	if !ok || !okAllow || hasReason && !okReason || hasRule && !okRule {
		return false, c.id, fmt.Sprintf("rego query %q returned %s, not a decision {allow, reason, rule}; denied", c.query, truncate(fmt.Sprint(values[0])))
	}
	if allow {
		return true, "", ""
	}
	if rule == "" {
		rule = c.id
	}
	if reason == "" {
		reason = fmt.Sprintf("denied by rego query %q", c.query)
	}
	return false, rule, reason
}
