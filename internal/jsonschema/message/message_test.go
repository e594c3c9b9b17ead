package message

import (
	"math"
	"net/url"
	"testing"

	"golang.org/x/text/language"
	xmessage "golang.org/x/text/message"
)

// TestSameAsXText holds the printer to x/text's English printer, whose
// output the validator's messages had upstream, for every verb and kind of
// argument the validator's messages use (kind/kind.go, output.go, util.go).
func TestSameAsXText(t *testing.T) {
	oracle := xmessage.NewPrinter(language.English)
	p := NewPrinter(English)
	for _, tc := range []struct {
		format string
		args   []any
	}{
		{"%d", []any{0}}, {"%d", []any{7}}, {"%d", []any{999}}, {"%d", []any{1000}}, {"%d", []any{-1000}},
		{"%d", []any{1234567}}, {"%d", []any{-123456789}}, {"%d", []any{math.MaxInt64}}, {"%d", []any{math.MinInt64}},
		{"%d", []any{uint64(math.MaxUint64)}}, {"%d", []any{int32(-45678)}},
		{"min %d items required to match contains schema, but matched %d items at %v", []any{2, 1500, "0, 1"}},
		{"'oneOf' failed, subschemas %d, %d matched", []any{3, 12345}},
		{"%v", []any{0.0}}, {"%v", []any{1.5}}, {"%v", []any{-2.25}}, {"%v", []any{999.999}}, {"%v", []any{1000.0}},
		{"%v", []any{1234.5}}, {"%v", []any{-9876543.125}}, {"%v", []any{123456789.0}}, {"%v", []any{0.001}},
		{"%v", []any{1e20}}, {"%v", []any{1e21}}, {"%v", []any{1.5e-7}}, {"%v", []any{math.MaxFloat64}},
		{"%v", []any{math.Inf(1)}}, {"%v", []any{math.Inf(-1)}}, {"%v", []any{math.NaN()}},
		{"%v", []any{12345}}, {"minimum: got %v, want %v", []any{1234.5, 100000.0}},
		{"invalid jsonType %T", []any{12345}}, {"%s is not valid %s: %v", []any{"\"x\"", "email", "bad"}},
		{"got %s, want %s", []any{"string", "integer"}}, {"both %s and %s resolve to %q causing reference cycle", []any{"a", "b", "u"}},
		{"at %s", []any{"'/a/1000'"}},
		// format.go's LocalizableError messages: runes under %q, errors of a
		// string kind under %v.
		{"invalid character %q", []any{'é'}}, {"invalid character %q in build identifier", []any{rune(0x2028)}},
		{"element %d must be %d characters long", []any{1, 12}}, {"percent decode failed: %v", []any{url.EscapeError("%zz")}},
		{"%v", []any{1e-5}}, {"%v", []any{0.1}},
	} {
		want, got := oracle.Sprintf(tc.format, tc.args...), p.Sprintf(tc.format, tc.args...)
		if got != want {
			t.Errorf("Sprintf(%q, %v) = %q, x/text writes %q", tc.format, tc.args, got, want)
		}
	}
}
