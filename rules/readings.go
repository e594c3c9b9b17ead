package rules

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// A path is read by more than one reader before a file is opened or a
// request routed: some percent-decode (once, or once per layer they pass
// through), some decode UTF-8 laxly, some apply Unicode compatibility
// normalisation (NFKC: Python's unicodedata, Java's Normalizer, many
// "sanitisers"), and Windows converts to an ANSI code page with "best fit"
// replacements. The functions here find what those readers would take for a
// separator or a dot segment when the canonical reading does not, so the
// canonicalisers can refuse it: refuse what two parsers read differently.

// bestFit holds characters that NFKC leaves alone but Windows' best-fit
// conversion turns into a separator under a common code page (Orange Tsai and
// splitline, "WorstFit", 2025): the division slash in most code pages, the
// yen sign in Japanese (932) and the won sign in Korean (949), where 0x5C is
// "\".
var bestFit = map[rune]string{'\u2215': "/", '\u00a5': `\`, '\u20a9': `\`}

// compatReading returns s as a compatibility-normalising reader sees it:
// each character through NFKC or best fit, format characters (zero-width
// spaces and joiners, soft hyphen, BOM) dropped as NFKC_Casefold and many
// sanitisers drop them.
func compatReading(s string) string {
	if isASCII(s) {
		return s
	}
	var b strings.Builder
	for _, r := range s {
		switch m, ok := bestFit[r]; {
		case ok:
			b.WriteString(m)
		case r < utf8.RuneSelf:
			b.WriteRune(r)
		case unicode.Is(unicode.Cf, r):
		default:
			b.WriteString(norm.NFKC.String(string(r)))
		}
	}
	return b.String()
}

// lookalikeSeparator names the first character of s that compatReading
// reads as containing "/", "\" or "%" (which would start an escape the
// canonical reading never decoded); "" when there is none. Reasons here are
// noun phrases for the caller's "has …".
func lookalikeSeparator(s string) string {
	if isASCII(s) {
		return ""
	}
	for _, r := range s {
		if r < utf8.RuneSelf {
			continue
		}
		if m := compatReading(string(r)); strings.ContainsAny(m, `/\%`) {
			return fmt.Sprintf("%q (U+%04X), which NFKC or Windows best-fit conversion reads as %q", string(r), r, m)
		}
	}
	return ""
}

// dotLookalike names a segment that is not a dot segment
// as written but whose compatibility reading is one ("．．", "‥", ".\u200b."),
// or is empty ("\u200b", which makes "/\u200b/host" the share "//host");
// "" otherwise.
func dotLookalike(seg string) string {
	if isASCII(seg) {
		return ""
	}
	m := compatReading(seg)
	if m == "" {
		return fmt.Sprintf("a segment %q of invisible characters, which NFKC reads as empty", seg)
	}
	if onlyDotsAndSpaces(m) {
		return fmt.Sprintf("a segment %q that NFKC reads as %q", seg, m)
	}
	return ""
}

// onlyDotsAndSpaces reports whether s has a dot and nothing but dots and
// spaces: ".", "..", and what Windows path normalisation, which trims
// trailing dots and spaces, may read as one of them ("...", ".. ").
func onlyDotsAndSpaces(s string) bool {
	return strings.Trim(s, ". ") == "" && strings.Contains(s, ".")
}

// percentDecode decodes the valid escapes of s and keeps the rest as
// written, as a lenient server does. For each escape it decodes, bad may
// return a reason to refuse the byte it decodes to.
func percentDecode(s string, bad func(esc string, c byte) string) (string, string) {
	if strings.IndexByte(s, '%') < 0 {
		return s, ""
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+2 >= len(s) || !isHex(s[i+1]) || !isHex(s[i+2]) {
			b = append(b, s[i])
			continue
		}
		c := unhex(s[i+1])<<4 | unhex(s[i+2])
		if reason := bad(s[i:i+3], c); reason != "" {
			return "", reason
		}
		b = append(b, c)
		i += 2
	}
	return string(b), ""
}

// decodedReadingProblem names why the once-decoded reading of
// a path cannot stand for every reader's: it still holds an escape (a
// second decoder reads on), or is not UTF-8 (a lax decoder reads the
// overlong %c0%ae as "."). "" when it can.
func decodedReadingProblem(decoded string) string {
	for i := 0; i+2 < len(decoded); i++ {
		if decoded[i] == '%' && isHex(decoded[i+1]) && isHex(decoded[i+2]) {
			return fmt.Sprintf("a double percent-encoding (%q once decoded), which some servers decode twice", decoded[i:i+3])
		}
	}
	if !utf8.ValidString(decoded) {
		return "percent-encoded bytes that are not UTF-8, which lax decoders read differently (the overlong %c0%ae is \".\")"
	}
	return ""
}
