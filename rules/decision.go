package rules

import (
	"encoding/json"
	"time"
)

// Mode says whether a policy's denials are enforced.
type Mode string

const (
	// Enforce blocks what the policy denies. It is the default.
	Enforce Mode = "enforce"
	// Monitor decides, logs, traces and counts, but forwards: for rolling a
	// new policy out safely.
	Monitor Mode = "monitor"
)

// Decision is the outcome of one Decide call. It is a value: the proxy logs
// it, traces it and acts on it, and never computes a decision of its own.
type Decision struct {
	// Allow reports whether the policy allows the call.
	Allow bool `json:"allow"`
	// Rule names the rule that decided, e.g. "fetch_url/approved-hosts"; the
	// default action is "default". Never empty.
	Rule string `json:"rule"`
	// Reason says, for a person, why: the rule's class of failure ("argument
	// /url: host is not in the approved list"). It never quotes what the
	// arguments hold (a host, a path, a number, an argument's name), because
	// it is logged, traced and counted; the policy author's own reason
	// strings are used as written.
	Reason string `json:"reason"`
	// Detail, when set, is Reason with the argument content that decided
	// (`host "evil.example" is not in the approved list`). It is for the
	// agent that sent the arguments, in its denial, and for `policy eval`;
	// the proxy never logs or traces it.
	Detail string `json:"detail,omitempty"`
	// Mode is the mode of the policy that decided.
	Mode Mode `json:"mode"`
	// RetryAfter, on a denial by a rate limit or budget, is when a call
	// could next be allowed.
	RetryAfter time.Duration `json:"retryAfter,omitempty"`
	// Rewrite, when set on an allow, is what the proxy delivers instead of
	// what was decided: a tools/list entry with hidden characters stripped,
	// or a tool result (MethodToolResult) with secrets redacted. It holds
	// content, so it is never logged.
	Rewrite json.RawMessage `json:"-"`
	// Confirm, set on a denial by a rule whose action is "confirm" (every
	// check passed), says the call may go on once a person approves it. A
	// proxy that does not ask anyone leaves it denied.
	Confirm *Confirm `json:"confirm,omitempty"`
}

// Confirm is how a call that needs a person's approval is put to one.
type Confirm struct {
	// Timeout is how long the person has to answer; then the call is
	// denied.
	Timeout time.Duration `json:"timeout"`
	// Queue: a client that cannot ask its user (no elicitation) waits on
	// the approval queue instead of being denied.
	Queue bool `json:"queue,omitempty"`
	// Arguments are the call's canonical arguments with every secret the
	// policy's scanner finds redacted, to show the person. They are
	// content: never logged or traced.
	Arguments json.RawMessage `json:"-"`
}

// Blocks reports whether the proxy must stop the call: the policy denied it
// and is enforcing.
func (d Decision) Blocks() bool { return !d.Allow && d.Mode != Monitor }

// Explain returns what the agent is told: Detail when set, else Reason.
func (d Decision) Explain() string {
	if d.Detail != "" {
		return d.Detail
	}
	return d.Reason
}

// Deny returns an enforced denial; the helper for fail-closed paths.
func Deny(rule, reason string) Decision {
	return Decision{Allow: false, Rule: rule, Reason: reason, Mode: Enforce}
}
