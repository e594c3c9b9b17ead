package telemetry

import (
	"encoding/json"
	"fmt"
	"regexp"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
	"mcpguard.dev/mcpguard/rules"
)

// Redacted replaces what a Redactor removes.
const Redacted = "[REDACTED]"

// DefaultSecretKeys matches object keys whose values are dropped whole,
// whatever they hold.
const DefaultSecretKeys = `(?i)(pass(word|wd|phrase)?|secret|token|api[-_]?key|auth|credential|cookie|session|private[-_]?key|signature)`

// DefaultSecretValues match secrets inside string values beyond the
// credential formats of rules.DefaultSecretScanner (AWS, GitHub, GitLab,
// Slack, Google, JWTs, private keys, bearer tokens, password=/token=
// assignments, …): any bearer value, URL userinfo, and every credential-like
// query parameter, however short.
var DefaultSecretValues = []string{
	`(?i)bearer\s+[a-z0-9._~+/=-]+`,
	`//[^/@\s]+@`,
	`(?i)[?&;][a-z0-9_.-]*(token|key|secret|password|passwd|sig|signature|credential|code)=[^&#\s]*`,
}

// Redactor rewrites recorded argument values: values under a secret-looking
// key become [REDACTED] whole, and every match of a value pattern inside a
// string is replaced by [REDACTED]. Numbers, booleans and null are kept.
// It is safe for concurrent use.
type Redactor struct {
	keys    *regexp.Regexp
	values  []*regexp.Regexp
	scanner *rules.SecretScanner
}

// NewRedactor returns a Redactor with the default patterns plus extra
// value patterns (Go regular expressions, e.g. from --redact).
func NewRedactor(extra []string) (*Redactor, error) {
	r := &Redactor{keys: regexp.MustCompile(DefaultSecretKeys), scanner: rules.DefaultSecretScanner()}
	for _, p := range DefaultSecretValues {
		r.values = append(r.values, regexp.MustCompile(p))
	}
	for _, p := range extra {
		re, err := regexp.Compile(p)
		if err != nil {
			return nil, fmt.Errorf("redact: %q: %v", p, err)
		}
		r.values = append(r.values, re)
	}
	return r, nil
}

// Redact returns the redacted form of a canonical JSON value. Input that is
// not canonical JSON is replaced whole: it is never recorded as it is.
func (r *Redactor) Redact(v json.RawMessage) json.RawMessage {
	out, ok := r.value(nil, v)
	if !ok {
		return jsonrpc.AppendString(nil, Redacted)
	}
	return out
}

func (r *Redactor) value(dst []byte, v []byte) ([]byte, bool) {
	if len(v) == 0 {
		return dst, false
	}
	switch v[0] {
	case '{':
		ms, err := jsonrpc.Members(v)
		if err != nil {
			return dst, false
		}
		dst = append(dst, '{')
		for i, m := range ms {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = jsonrpc.AppendString(dst, m.Key)
			dst = append(dst, ':')
			// A zero-width character or a percent-encoded letter does not
			// hide a key from the pattern ("pass\u200bword", "to%6Ben").
			if r.keys.MatchString(rules.NormalizeForScan(m.Key)) {
				dst = jsonrpc.AppendString(dst, Redacted)
				continue
			}
			var ok bool
			if dst, ok = r.value(dst, m.Value); !ok {
				return dst, false
			}
		}
		return append(dst, '}'), true
	case '[':
		es, err := jsonrpc.Elements(v)
		if err != nil {
			return dst, false
		}
		dst = append(dst, '[')
		for i, e := range es {
			if i > 0 {
				dst = append(dst, ',')
			}
			var ok bool
			if dst, ok = r.value(dst, e); !ok {
				return dst, false
			}
		}
		return append(dst, ']'), true
	case '"':
		var s string
		if err := json.Unmarshal(v, &s); err != nil {
			return dst, false
		}
		// Matched on the normalised string (invisible characters dropped,
		// percent-encoded letters decoded), which is what is recorded: what
		// hid a secret from a pattern is not worth keeping.
		s, _ = r.scanner.RedactAs(rules.NormalizeForScan(s), Redacted)
		for _, re := range r.values {
			s = re.ReplaceAllString(s, Redacted)
		}
		return jsonrpc.AppendString(dst, s), true
	case 't', 'f', 'n', '-', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
		if json.Valid(v) {
			return append(dst, v...), true // a number, a boolean or null
		}
	}
	return dst, false
}
