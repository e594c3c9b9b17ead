// Package message stands in for golang.org/x/text/message in this copy of
// the validator (see ../README.md): its one printer, English, is
// fmt.Sprintf with the integer part of numbers printed by %d or %v grouped
// in threes by commas, as x/text's English printer writes them. Linking
// x/text's message package ran the package initialisation of its language,
// plural, number and catalog tables in every start of the sidecar (#18),
// for error messages rarely written.
package message

import (
	"fmt"
	"reflect"
	"strings"
)

// Printer formats messages in English, the only language this copy uses.
type Printer struct{}

// Tag names a language; English is the only one.
type Tag struct{}

// English is the language of every message.
var English Tag

// NewPrinter returns the English printer.
func NewPrinter(Tag) *Printer { return &Printer{} }

// Sprintf is fmt.Sprintf with numbers grouped as x/text's English printer
// groups them.
func (p *Printer) Sprintf(format string, args ...any) string {
	var wrapped []any
	for i, verb := range verbs(format) {
		if i >= len(args) || (verb != 'd' && verb != 'v') {
			continue
		}
		switch reflect.ValueOf(args[i]).Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr,
			reflect.Float32, reflect.Float64:
			if wrapped == nil {
				wrapped = append([]any(nil), args...)
			}
			wrapped[i] = number{args[i]}
		}
	}
	if wrapped == nil {
		return fmt.Sprintf(format, args...)
	}
	return fmt.Sprintf(format, wrapped...)
}

// verbs returns the verb of each argument format consumes, in order (no
// explicit argument indexes: the validator's messages use none).
func verbs(format string) []rune {
	var out []rune
	for i := 0; i < len(format); i++ {
		if format[i] != '%' {
			continue
		}
		i++
		for i < len(format) && strings.IndexByte("+-# 0123456789.*", format[i]) >= 0 {
			if format[i] == '*' {
				out = append(out, '*')
			}
			i++
		}
		if i < len(format) && format[i] != '%' {
			out = append(out, rune(format[i]))
		}
	}
	return out
}

// number is an argument printed by %d or %v, in English.
type number struct{ v any }

func (n number) Format(f fmt.State, verb rune) {
	_, _ = f.Write([]byte(english(fmt.Sprintf(fmt.FormatString(f, verb), n.v))))
}

// superscript are the exponent's digits and sign as x/text writes them.
var superscript = strings.NewReplacer("+", "", "-", "⁻", "0", "⁰", "1", "¹", "2", "²", "3", "³",
	"4", "⁴", "5", "⁵", "6", "⁶", "7", "⁷", "8", "⁸", "9", "⁹")

// english writes a number fmt wrote as x/text's English printer does: a
// comma between each three digits of the integer part ("-1234567.5" →
// "-1,234,567.5"), an exponent as a power of ten ("1.5e-07" →
// "1.5×10⁻⁰⁷"), infinity as "∞".
func english(s string) string {
	switch s {
	case "+Inf":
		return "∞"
	case "-Inf":
		return "-∞"
	}
	if mant, exp, ok := strings.Cut(s, "e"); ok {
		return mant + "×10" + superscript.Replace(exp)
	}
	start := strings.IndexAny(s, "0123456789")
	if start < 0 {
		return s
	}
	end := start
	for end < len(s) && s[end] >= '0' && s[end] <= '9' {
		end++
	}
	digits := s[start:end]
	if len(digits) <= 3 {
		return s
	}
	var b strings.Builder
	b.WriteString(s[:start])
	for i, d := range []byte(digits) {
		if i > 0 && (len(digits)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteByte(d)
	}
	b.WriteString(s[end:])
	return b.String()
}
