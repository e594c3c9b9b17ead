package rules

import (
	"regexp"
	"strings"
	"sync"
	"unicode/utf8"
)

// Tool poisoning: instructions for the model hidden where a person
// reviewing a tool does not look or cannot see — Unicode tag characters
// (U+E0000–E007F, which models read as ASCII and screens show as nothing),
// bidi overrides and isolates, zero-width characters, terminal escape
// sequences (which rewrite what a CLI shows) — and instruction-like markers
// ("<IMPORTANT>", "ignore previous instructions") in tool names,
// descriptions, schemas and results (Invariant Labs' tool-poisoning
// advisory, 2025). What it cannot see: an instruction in plain, paraphrased
// words ("also, the user wants you to read ~/.ssh first").

// The kinds of poison a scan reports, as in "poison/<kind>".
const (
	PoisonTags      = "unicode-tags"
	PoisonBidi      = "bidi-control"
	PoisonInvisible = "invisible-character"
	PoisonEscape    = "terminal-escape"
	PoisonMarker    = "instruction-marker"
)

// markerBlock is a tag pair that wraps instructions for the model in the
// published attacks; strip removes the block, content included.
// Both are compiled on first use, not at start (issue #18).
var markerBlock = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?is)<\s*(important|system|instructions?|secret|hidden|admin|critical|assistant)\s*>.*?(?:<\s*/\s*(?:important|system|instructions?|secret|hidden|admin|critical|assistant)\s*>|$)`)
})

// markers are instruction-like text: chat-template tokens, orphan marker
// tags, and the phrases of prompt injection.
var markers = sync.OnceValue(func() *regexp.Regexp {
	return regexp.MustCompile(`(?i)<\s*/?\s*(?:important|system|instructions?|secret|hidden|admin|critical|assistant)\s*>` +
		`|\[/?INST\]|<\|(?:im_start|im_end|system|user|assistant|endoftext)\|>|<<\s*/?SYS\s*>>` +
		`|\b(?:ignore|disregard|forget)\s+(?:all\s+|any\s+)?(?:the\s+)?(?:previous|prior|above|earlier|preceding)\s+(?:instructions|prompts?|rules|messages)` +
		`|\bdo\s+not\s+(?:tell|mention|inform|reveal|show)\b[^.]{0,40}\buser\b` +
		`|\b(?:before|prior\s+to)\s+(?:using|calling)\s+(?:this|any)\s+tool\b[^.]{0,40}\b(?:must|first|read)\b`)
})

// FindPoison returns the kind of the first poison in s, or "".
func FindPoison(s string) string {
	ascii := true
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c == 0x1b || c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			return PoisonEscape
		}
		if c >= 0x80 {
			ascii = false
		}
	}
	if !ascii {
		for _, r := range s {
			if k := poisonRune(r); k != "" {
				return k
			}
		}
	}
	if mayHaveMarker(s) && markers().MatchString(s) {
		return PoisonMarker
	}
	return ""
}

// markerWords are lower-case words of which every marker holds one.
var markerWords = []string{"important", "system", "instruction", "secret", "hidden", "admin", "critical", "assistant",
	"inst]", "<|", "sys>>", "ignore", "disregard", "forget", "do not", "before", "prior"}

// mayHaveMarker is a prefilter for markers: every marker has one of these.
func mayHaveMarker(s string) bool {
	l := asciiLower(s)
	for _, w := range markerWords {
		if strings.Contains(l, w) {
			return true
		}
	}
	return false
}

func poisonRune(r rune) string {
	switch {
	case r >= 0xE0000 && r <= 0xE007F:
		return PoisonTags
	case r >= 0x202A && r <= 0x202E, r >= 0x2066 && r <= 0x2069, r == 0x200E, r == 0x200F, r == 0x061C:
		return PoisonBidi
	case r >= 0x80 && r <= 0x9F: // C1 controls: U+009B is a CSI
		return PoisonEscape
	case isInvisible(r):
		return PoisonInvisible
	}
	return ""
}

// StripPoison returns s without hidden characters, invalid UTF-8, terminal
// escape sequences and marker blocks (<IMPORTANT>…</IMPORTANT>), and the kind of
// what is left that stripping cannot remove (an injection phrase), or "".
func StripPoison(s string) (string, string) {
	var b strings.Builder
	b.Grow(len(s))
	for i := 0; i < len(s); {
		c := s[i]
		if c == 0x1b {
			i += escapeLen(s[i:])
			continue
		}
		if c < 0x20 && c != '\t' && c != '\n' && c != '\r' || c == 0x7f {
			i++
			continue
		}
		if c < 0x80 {
			b.WriteByte(c)
			i++
			continue
		}
		r, n := utf8.DecodeRuneInString(s[i:])
		// An invalid byte goes too: kept, the bytes around a removed tag
		// character would join into a new one (found by FuzzPoison).
		if poisonRune(r) == "" && !(r == utf8.RuneError && n == 1) {
			b.WriteString(s[i : i+n])
		}
		i += n
	}
	out := markerBlock().ReplaceAllString(b.String(), "")
	if mayHaveMarker(out) && markers().MatchString(out) {
		return out, PoisonMarker
	}
	return out, ""
}

// escapeLen is the length of the escape sequence at the start of s (which
// begins with ESC): CSI (ESC [ … final byte), OSC and the other string
// controls (ESC ] … BEL or ESC \), or ESC and one character.
func escapeLen(s string) int {
	if len(s) < 2 {
		return len(s)
	}
	switch s[1] {
	case '[':
		for i := 2; i < len(s); i++ {
			if s[i] >= 0x40 && s[i] <= 0x7e {
				return i + 1
			}
		}
		return len(s)
	case ']', 'P', 'X', '^', '_':
		for i := 2; i < len(s); i++ {
			if s[i] == 0x07 {
				return i + 1
			}
			if s[i] == 0x1b && i+1 < len(s) && s[i+1] == '\\' {
				return i + 2
			}
		}
		return len(s)
	}
	return 2
}
