package rules

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
	// Reason says, for a person, why; for a denial it is what the agent sees.
	Reason string `json:"reason"`
	// Mode is the mode of the policy that decided.
	Mode Mode `json:"mode"`
}

// Blocks reports whether the proxy must stop the call: the policy denied it
// and is enforcing.
func (d Decision) Blocks() bool { return !d.Allow && d.Mode != Monitor }

// Deny returns an enforced denial; the helper for fail-closed paths.
func Deny(rule, reason string) Decision {
	return Decision{Allow: false, Rule: rule, Reason: reason, Mode: Enforce}
}
