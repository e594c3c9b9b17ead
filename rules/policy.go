package rules

// The types below are the ToolPolicy document as written in YAML. They are
// decoded strictly (see decode.go) and compiled once (compile.go); nothing
// decides on them directly. docs/policy.md is the reference for authors.

// APIVersion and Kind identify a ToolPolicy document.
const (
	APIVersion = "mcpguard.dev/v1alpha1"
	Kind       = "ToolPolicy"
)

// Policy is one ToolPolicy document.
type Policy struct {
	APIVersion string   `yaml:"apiVersion"`
	Kind       string   `yaml:"kind"`
	Metadata   Metadata `yaml:"metadata"`
	Spec       Spec     `yaml:"spec"`
}

// Metadata names a policy; the name appears in logs and in `policy check`.
type Metadata struct {
	Name        string            `yaml:"name"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

// Spec is what a policy decides.
type Spec struct {
	// Mode is "enforce" (the default) or "monitor".
	Mode string `yaml:"mode"`
	// DefaultAction applies to a call no rule matches: "deny" (the default)
	// or "allow".
	DefaultAction string `yaml:"defaultAction"`
	// DefaultReason replaces the generated reason of the default action.
	DefaultReason string `yaml:"defaultReason"`
	// Methods names the methods outside mcpguard's method table that pass,
	// in both directions: exact names ("acme/sync") or a vendor's prefix
	// ("acme/*"). Any other method outside the table is refused; a method
	// of the table, or a near-miss spelling of one, is an error here.
	Methods []string `yaml:"methods"`
	// Gateway describes the MCP gateway in front of the tool servers.
	Gateway Gateway `yaml:"gateway"`
	// Rego lists the Rego modules that checks of kind "rego" query.
	Rego RegoSpec `yaml:"rego"`
	// Tools are the rules for tools/call and tools/list; first match wins.
	Tools []Rule `yaml:"tools"`
	// Resources are the rules for resources/read, matched by URI; first
	// match wins.
	Resources []Rule `yaml:"resources"`
	// Prompts are the rules for prompts/get, matched by prompt name.
	Prompts []Rule `yaml:"prompts"`
	// Sampling decides the server→agent sampling/createMessage requests;
	// nil: the default action.
	Sampling *Rule `yaml:"sampling"`
	// Elicitation decides the server→agent elicitation/create requests;
	// nil: the default action.
	Elicitation *Rule `yaml:"elicitation"`
	// Pins are the expected tool definitions.
	Pins Pins `yaml:"pins"`
	// Paths says how path checks read paths on this machine (home.go).
	Paths PathsSpec `yaml:"paths"`
	// Secrets scans tool results and arguments for credentials (DLP); a
	// rule's own secrets block overrides the actions. nil: no scanning.
	Secrets *Secrets `yaml:"secrets"`
	// Poisoning checks tool definitions and results for hidden Unicode,
	// terminal escapes and instruction-like markers; a rule's own block
	// overrides it. nil: no checks.
	Poisoning *Poisoning `yaml:"poisoning"`
	// Approval says how calls of rules with action "confirm" are put to a
	// person. nil: the defaults below.
	Approval *Approval `yaml:"approval"`
}

// Approval says how a call that needs a person's approval (a rule's action
// "confirm") is put to one (see docs/policy.md, "Human approval").
type Approval struct {
	// Timeout is how long a person has to answer, a Go duration; no answer
	// in time denies the call. Default "60s".
	Timeout string `yaml:"timeout"`
	// Fallback is what happens when the agent's client cannot ask its user
	// (it did not declare MCP's elicitation capability, or speaks the
	// stateless 2026-07-28 protocol): "deny" (the default) or "queue" (the
	// call waits on the admin listener's approval queue, for `mcpguard
	// approve|deny ID`).
	Fallback string `yaml:"fallback"`
}

// Secrets says what happens to credentials found in tool results and
// arguments (see docs/policy.md, "Secrets").
type Secrets struct {
	// Results is "redact" (replace each secret, keep the rest), "block"
	// (the agent gets an error instead of the result), "log" (forward, and
	// the decision names the secret's kind) or "off". Default "redact".
	Results string `yaml:"results"`
	// Arguments is "deny" (a call whose arguments carry a secret is
	// denied), "log" or "off". Default "deny".
	Arguments string `yaml:"arguments"`
	// Patterns are the policy's own detectors, added to the built-in ones;
	// only in spec.secrets.
	Patterns []SecretPattern `yaml:"patterns"`
}

// Poisoning says what happens to a tool definition or result carrying
// hidden instructions.
type Poisoning struct {
	// Definitions is "hide" (drop the tool from tools/list and deny its
	// calls), "strip" (remove what can be removed — hidden characters,
	// escapes, <IMPORTANT> blocks — and hide the tool if an injection
	// phrase remains), "log" or "off". Default "hide".
	Definitions string `yaml:"definitions"`
	// Results is "deny" (the agent gets an error instead of the result),
	// "strip" (as above; deny if a phrase remains), "log" or "off".
	// Default "strip".
	Results string `yaml:"results"`
}

// Limits bound how often a rule's tools may be called: a token bucket (Rate
// calls per second, up to Burst at once) and a budget (Calls per Window).
// Either part may be left out.
type Limits struct {
	// Rate is the sustained calls per second; 0: no bucket.
	Rate float64 `yaml:"rate"`
	// Burst is the bucket's size; default: Rate rounded up, at least 1.
	Burst int `yaml:"burst"`
	// Calls is the budget per Window; 0: no budget.
	Calls int `yaml:"calls"`
	// Window is the budget's period, a Go duration ("1h"); required with
	// Calls.
	Window string `yaml:"window"`
	// Per is "identity" (the default: each caller — credential hash, else
	// pod ServiceAccount — has its own bucket and budget) or "tool" (one,
	// shared by every caller).
	Per string `yaml:"per"`
}

// Gateway describes the gateway's tool-name prefixes.
type Gateway struct {
	// Prefixes are the MCPServerRegistration spec.prefix values whose tools
	// this policy governs: with prefix "weather", the rule for "fetch_url"
	// also matches "weather_fetch_url". Empty: names match as written.
	Prefixes []string `yaml:"prefixes"`
}

// RegoSpec lists Rego modules.
type RegoSpec struct {
	Modules []RegoModule `yaml:"modules"`
}

// RegoModule is a Rego module in a file (relative to the policy file) or
// inline; exactly one of the two.
type RegoModule struct {
	File   string `yaml:"file"`
	Inline string `yaml:"inline"`
}

// Rule decides the calls it matches. Which field matches depends on the
// list it is in: Tool in spec.tools, Prompt in spec.prompts, URI in
// spec.resources; sampling and elicitation rules match every request of
// their method.
type Rule struct {
	// ID names the rule in decisions ("fetch_url", then
	// "fetch_url/approved-hosts" for its checks); ids are unique in a
	// policy. Default: the tool or prompt name, or "sampling" and
	// "elicitation"; resource rules must name themselves.
	ID string `yaml:"id"`
	// Tool is a tool name, or a glob when it contains "*" or "?".
	Tool string `yaml:"tool"`
	// Prompt is a prompt name, or a glob when it contains "*" or "?".
	Prompt string `yaml:"prompt"`
	// URI matches a resource URI: the rule applies when every field of the
	// check holds.
	URI *URLCheck `yaml:"uri"`
	// Servers limits the rule to these upstream servers (Input.Server, or
	// the gateway prefix the tool name carries). Empty: every server.
	Servers []string `yaml:"servers"`
	// Action is "allow" (the default: allowed when every check passes),
	// "deny" (always denied; the tool is hidden from tools/list) or
	// "confirm" (tools only: when every check passes, a person approves the
	// call before it is forwarded; see Approval).
	Action string `yaml:"action"`
	// Reason is what a denial by this rule says; a check's own reason wins.
	Reason string `yaml:"reason"`
	// Checks must all pass for an allow; the first that fails decides.
	Checks []Check `yaml:"checks"`
	// Secrets overrides spec.secrets' results and arguments actions for
	// this rule's tools (patterns stay spec-wide).
	Secrets *Secrets `yaml:"secrets"`
	// Poisoning overrides spec.poisoning for this rule's tools.
	Poisoning *Poisoning `yaml:"poisoning"`
	// Limits bound the rule's allowed calls (tools only).
	Limits *Limits `yaml:"limits"`
}

// Check is one condition on the arguments. Exactly one kind is set: url,
// path, string, number, required, forbidden, additionalArguments, schema or
// rego.
type Check struct {
	// ID names the check; the decision's rule is "<rule id>/<check id>".
	// Default: the kind, e.g. "url".
	ID string `yaml:"id"`
	// Argument is the JSON pointer (RFC 6901) of the value the check reads,
	// e.g. "/url"; required for url, path, string and number checks.
	Argument string `yaml:"argument"`
	// Optional lets the check pass when the argument is absent; otherwise
	// an absent argument fails it.
	Optional bool `yaml:"optional"`
	// Reason replaces the generated reason when the check fails.
	Reason string `yaml:"reason"`

	URL    *URLCheck    `yaml:"url"`
	Path   *PathCheck   `yaml:"path"`
	String *StringCheck `yaml:"string"`
	Number *NumberCheck `yaml:"number"`
	// Required lists JSON pointers that must be present.
	Required []string `yaml:"required"`
	// Forbidden lists JSON pointers that must be absent.
	Forbidden []string `yaml:"forbidden"`
	// AdditionalArguments false: no top-level argument beyond the
	// properties of the inputSchema the upstream advertised.
	AdditionalArguments *bool `yaml:"additionalArguments"`
	// Schema true: the arguments must validate against the inputSchema the
	// upstream advertised in tools/list.
	Schema bool `yaml:"schema"`
	// Rego is a query, e.g. "data.mcpguard.fetch.decision", whose value is
	// a decision document {allow, reason, rule}.
	Rego string `yaml:"rego"`
}

// URLCheck constrains a URL after canonicalisation (see ParseURL). Each
// field left empty is not checked.
type URLCheck struct {
	// AppliesToHosts limits the check to URLs whose host matches one of
	// these; other URLs pass it.
	AppliesToHosts []string `yaml:"appliesToHosts"`
	// Schemes allowed, lower case.
	Schemes []string `yaml:"schemes"`
	// Hosts allowed: exact names or addresses, or "*.example.com" for any
	// subdomain (not example.com itself).
	Hosts []string `yaml:"hosts"`
	// Ports allowed; the scheme's default port counts when none is written.
	Ports []int `yaml:"ports"`
	// Paths allowed: exact ("/a", a trailing "/" ignored) or prefix
	// ("/a/*": "/a/" and everything under it).
	Paths []string `yaml:"paths"`
	// DenyPaths denied, same patterns, compared case-insensitively and also
	// against the path with ";params" removed from its segments.
	DenyPaths []string `yaml:"denyPaths"`
	// DenyIPClasses are the address classes denied, by name (see
	// IPClassNames); applied to IP hosts, to what a non-canonical host reads
	// as, and to well-known names (localhost, metadata.google.internal).
	DenyIPClasses []string `yaml:"denyIPClasses"`
	// Userinfo is "deny" or "allow"; empty: not checked.
	Userinfo string `yaml:"userinfo"`
}

// PathCheck confines a file path (see CleanPath).
type PathCheck struct {
	// Roots the path must be equal to or under.
	Roots []string `yaml:"roots"`
}

// StringCheck constrains a string.
type StringCheck struct {
	// Allow: the whole string must match one of these regular expressions
	// (RE2 syntax; they are anchored for you).
	Allow []string `yaml:"allow"`
	// Deny: the string must not contain a match of any of these.
	Deny []string `yaml:"deny"`
	// MaxLength in characters; 0: no limit.
	MaxLength int `yaml:"maxLength"`
	// Enum: the string must be one of these.
	Enum []string `yaml:"enum"`
}

// NumberCheck constrains a number, compared exactly (no float rounding).
type NumberCheck struct {
	Minimum string `yaml:"minimum"`
	Maximum string `yaml:"maximum"`
	// Integer requires an integral value.
	Integer bool `yaml:"integer"`
}

// Pins are the expected definitions of tools, against rug pulls: a tool
// whose definition changes after it was approved.
type Pins struct {
	// OnChange is "hide" (the default: the changed tool disappears from
	// tools/list and its calls are denied) or "block" (every tool of the
	// server that changed is hidden and denied).
	OnChange string `yaml:"onChange"`
	// Unpinned is what happens to a listed tool with no pin: "hide" (the
	// default once any pin is set) or "allow".
	Unpinned string `yaml:"unpinned"`
	// Tools maps a tool name, as listed (gateway prefix included), to the
	// PinHash of its definition, "sha256:<hex>".
	Tools map[string]string `yaml:"tools"`
}
