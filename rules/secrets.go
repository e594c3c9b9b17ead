package rules

import (
	"fmt"
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// Secret scanning (DLP): the credentials a tool result can carry back to the
// model, and an argument can carry out to a tool. A scanner reads decoded
// strings (JSON escapes already undone) after normalising away what hides a
// secret from a pattern but not from a reader: zero-width and other
// invisible format characters, and percent-encoded letters and digits
// ("AKIA%49OSF…" is AKIAIOSF…). What it cannot see: a secret split across two
// strings or two results, one encoded otherwise (base64 blobs, hex, a
// paraphrase), and formats it has no pattern for.

// SecretKinds are the built-in detectors, by the name decisions report
// ("secrets/aws-access-key-id").
var builtinSecrets = []struct {
	kind string
	// lits are cheap prefilters: the pattern can only match where one of
	// them occurs (compared case-insensitively when fold is set).
	lits []string
	fold bool
	re   string
}{
	{"aws-access-key-id", []string{"AKIA", "ASIA", "ABIA", "ACCA", "AGPA", "AIDA", "AIPA", "ANPA", "ANVA", "AROA", "APKA", "ASCA"}, false,
		// No word boundary: "x_AKIA…" is still a key id (found by review).
		`(?:AKIA|ASIA|ABIA|ACCA|AGPA|AIDA|AIPA|ANPA|ANVA|AROA|APKA|ASCA)[0-9A-Z]{16}`},
	{"github-token", []string{"ghp_", "gho_", "ghu_", "ghs_", "ghr_"}, false, `gh[pousr]_[A-Za-z0-9]{20,255}`},
	{"github-fine-grained-token", []string{"github_pat_"}, false, `github_pat_[A-Za-z0-9_]{22,255}`},
	{"gitlab-token", []string{"glpat-", "gldt-", "glrt-", "glptt-", "glsoat-", "glcbt-", "glft-", "glimt-"}, false, `gl(?:pat|dt|rt|ptt|soat|cbt|ft|imt)-[0-9A-Za-z_-]{20,}`},
	{"slack-token", []string{"xox"}, false, `xox[abposre]-[0-9A-Za-z-]{10,}`},
	{"slack-webhook", []string{"hooks.slack.com"}, false, `hooks\.slack\.com/(?:services|workflows)/[A-Za-z0-9/_-]{20,}`},
	{"private-key", []string{"-----BEGIN"}, false,
		`-----BEGIN[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)(?:-----END[A-Z0-9 ]{0,40}PRIVATE KEY(?: BLOCK)?-----|$)`},
	{"jwt", []string{"eyJ"}, false, `eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*`},
	{"google-api-key", []string{"AIza"}, false, `AIza[0-9A-Za-z_-]{35}`},
	{"api-key", []string{"sk-", "sk_", "pk-", "pk_", "rk-", "rk_"}, true, `(?i)\b(?:sk|pk|rk)[-_](?:live|test|proj|ant)?[-_]?[A-Za-z0-9_-]{20,}`},
	{"bearer-token", []string{"bearer"}, true, `(?i)\bbearer\s+[a-z0-9._~+/=-]{8,}`},
	{"url-credentials", []string{"://"}, false, `[a-zA-Z][a-zA-Z0-9+.-]*://[^/@\s:]+:[^/@\s]+@`},
	// Generic assignments: password=…, token=…, private_token=…,
	// X-Amz-Signature=…, in a query string, a command line or a config.
	// The key's prefix ("private_", "X-Amz-") stays: matching it too would
	// put a leading [a-z0-9_.-]* before every position of the text.
	{"assignment", []string{"pass", "pwd", "secret", "token", "key", "signature", "credential"}, true,
		`(?i)(?:pass(?:word|wd|phrase)?|pwd|secret|token|api[-_]?key|apikey|access[-_]?key|signature|credential)=[^\s&#"',;<>]{3,}`},
}

// SecretPattern is a policy's own detector.
type SecretPattern struct {
	// Name is what decisions report: "secrets/<name>".
	Name string `yaml:"name"`
	// Regex is a Go (RE2) regular expression matched against the
	// normalised text.
	Regex string `yaml:"regex"`
}

type detector struct {
	kind string
	lits []string
	fold bool
	re   *regexp.Regexp
}

// need is a literal every match of kind contains, besides one of its lits.
var need = map[string]string{"url-credentials": "@", "assignment": "="}

// SecretScanner finds credentials in text. It is immutable and safe for
// concurrent use.
type SecretScanner struct {
	detectors []detector
}

// defaultScanner is compiled on first use, not at start: a policy without
// secret scanning never pays for its expressions (issue #18).
var defaultScanner = sync.OnceValue(func() *SecretScanner {
	sc, err := NewSecretScanner(nil)
	if err != nil {
		panic(err)
	}
	return sc
})

// DefaultSecretScanner returns the scanner with the built-in detectors only.
func DefaultSecretScanner() *SecretScanner { return defaultScanner() }

// NewSecretScanner returns a scanner with the built-in detectors and extra.
func NewSecretScanner(extra []SecretPattern) (*SecretScanner, error) {
	sc := &SecretScanner{}
	for _, b := range builtinSecrets {
		sc.detectors = append(sc.detectors, detector{kind: b.kind, lits: b.lits, fold: b.fold, re: regexp.MustCompile(b.re)})
	}
	for _, p := range extra {
		re, err := regexp.Compile(p.Regex)
		if err != nil {
			return nil, fmt.Errorf("secret pattern %q: %v", p.Name, err)
		}
		sc.detectors = append(sc.detectors, detector{kind: p.Name, re: re})
	}
	return sc, nil
}

// Find returns the kind of the first secret in s, or "".
func (sc *SecretScanner) Find(s string) string {
	n := NormalizeForScan(s)
	var lower string
	for i := range sc.detectors {
		d := &sc.detectors[i]
		if d.may(n, &lower) && d.re.MatchString(n) {
			return d.kind
		}
	}
	return ""
}

// Redact returns s with every secret replaced by "[REDACTED:<kind>]", and
// the kinds found (nil and s unchanged when there were none). A string with
// a secret is returned in its normalised form (invisible characters
// dropped, percent-encoded letters decoded): what hid the secret goes too.
func (sc *SecretScanner) Redact(s string) (string, []string) {
	return sc.RedactAs(s, "")
}

// RedactAs is Redact with every secret replaced by mark instead ("" means
// "[REDACTED:<kind>]").
func (sc *SecretScanner) RedactAs(s, mark string) (string, []string) {
	n := NormalizeForScan(s)
	var kinds []string
	var lower string
	for i := range sc.detectors {
		d := &sc.detectors[i]
		if !d.may(n, &lower) || !d.re.MatchString(n) {
			continue
		}
		lower = "" // n changes below
		kinds = append(kinds, d.kind)
		m := mark
		if m == "" {
			m = "[REDACTED:" + d.kind + "]"
		}
		n = d.re.ReplaceAllLiteralString(n, m)
	}
	if kinds == nil {
		return s, nil
	}
	return n, kinds
}

// may reports whether d could match s: whether s holds one of its
// literals. lower caches s in lower case for the detectors that fold.
func (d *detector) may(s string, lower *string) bool {
	if len(d.lits) == 0 {
		return true
	}
	if n, ok := need[d.kind]; ok && !strings.Contains(s, n) {
		return false
	}
	in := s
	if d.fold {
		if *lower == "" {
			*lower = asciiLower(s)
		}
		in = *lower
	}
	for _, l := range d.lits {
		if strings.Contains(in, l) {
			return true
		}
	}
	return false
}

// NormalizeForScan returns s without invisible format characters (zero-width
// spaces and joiners, bidi controls, Unicode tag characters, soft hyphens,
// the BOM) and with percent-encoded ASCII letters and digits decoded (twice,
// for a double encoding). ASCII text without '%' is returned as it is, at
// the cost of one pass.
func NormalizeForScan(s string) string {
	plain := true
	for i := 0; i < len(s); i++ {
		if c := s[i]; c == '%' || c >= utf8.RuneSelf {
			plain = false
			break
		}
	}
	if plain {
		return s
	}
	if strings.IndexByte(s, '%') < 0 && !hasInvisible(s) {
		return s
	}
	var b strings.Builder
	b.Grow(len(s))
	for _, r := range s {
		if isInvisible(r) {
			continue
		}
		b.WriteRune(r)
	}
	out := b.String()
	for range 2 {
		if strings.IndexByte(out, '%') < 0 {
			break
		}
		out = decodeAlnumEscapes(out)
	}
	return out
}

func decodeAlnumEscapes(s string) string {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) {
			if c, ok := unhex2(s[i+1], s[i+2]); ok && (c >= '0' && c <= '9' || c >= 'A' && c <= 'Z' || c >= 'a' && c <= 'z' || c == '_' || c == '-' || c == '%') {
				b.WriteByte(c)
				i += 2
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func unhex2(a, b byte) (byte, bool) {
	h := func(c byte) (byte, bool) {
		switch {
		case c >= '0' && c <= '9':
			return c - '0', true
		case c >= 'a' && c <= 'f':
			return c - 'a' + 10, true
		case c >= 'A' && c <= 'F':
			return c - 'A' + 10, true
		}
		return 0, false
	}
	x, ok1 := h(a)
	y, ok2 := h(b)
	return x<<4 | y, ok1 && ok2
}

func hasInvisible(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < utf8.RuneSelf {
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		if isInvisible(r) {
			return true
		}
		i += n - 1
	}
	return false
}

// isInvisible reports whether r is a format character that renders as
// nothing: what hides a secret from a pattern or an instruction from a
// reviewer.
func isInvisible(r rune) bool {
	switch {
	case r == 0x00AD, r == 0x034F, r == 0x061C, r == 0x115F, r == 0x1160, r == 0x17B4, r == 0x17B5, r == 0x180E,
		r >= 0x200B && r <= 0x200F, // zero-width space, joiners, LRM, RLM
		r >= 0x202A && r <= 0x202E, // bidi embeddings and overrides
		r >= 0x2060 && r <= 0x2064, // word joiner, invisible operators
		r >= 0x2066 && r <= 0x206F, // bidi isolates, deprecated format characters
		r == 0x3164, r == 0xFEFF, r == 0xFFA0,
		r >= 0xFE00 && r <= 0xFE0F,   // variation selectors
		r >= 0xE0000 && r <= 0xE007F, // tag characters
		r >= 0xE0100 && r <= 0xE01EF: // variation selectors supplement
		return true
	}
	return false
}
