package promtext

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/otlptranslator"
)

// FuzzLabelEscaping: whatever an attribute key, value or description holds,
// the exposition parses, and the label value and help read back as written
// (invalid UTF-8 as U+FFFD; the parser drops the help's leading blanks, as
// it does client_golang's).
func FuzzLabelEscaping(f *testing.F) {
	for _, s := range [][3]string{
		{"mcp.method.name", "tools/call", "Policy decisions."},
		{"a\"b", `quote " backslash \ newline` + "\n" + "tab\tend", "help \\ with \n newline and \"quotes\""},
		{"9lives", "\xff\xfe invalid", "\xc3"},
		{"__x__", "", " \t leading blanks"},
		{"héllo.世界", "}{,=\"", "# TYPE x counter"},
		{"", "\\n", "\\"},
	} {
		f.Add(s[0], s[1], s[2])
	}
	f.Fuzz(func(t *testing.T, key, value, help string) {
		lname, err := labelName(key)
		if err != nil {
			lname = "key"
		}
		mname, err := metricName(key, "s", kindMonotonicCounter)
		if err != nil {
			mname = "m_total"
		}
		fam := &family{name: mname, help: help, typ: typeCounter, series: []series{{labels: []label{{lname, value}}, value: 1}}}
		var buf bytes.Buffer
		writeFamily(&buf, fam)
		text := buf.String()
		p := expfmt.NewTextParser(model.LegacyValidation)
		mfs, err := p.TextToMetricFamilies(&buf)
		if err != nil {
			t.Fatalf("expfmt cannot parse %q: %v", text, err)
		}
		mf := mfs[mname]
		if mf == nil || len(mf.Metric) != 1 || len(mf.Metric[0].Label) != 1 {
			t.Fatalf("parsed %v from %q", mfs, text)
		}
		l := mf.Metric[0].Label[0]
		if l.GetName() != lname || l.GetValue() != strings.ToValidUTF8(value, "\uFFFD") {
			t.Errorf("label %s=%q from %q, want %s=%q", l.GetName(), l.GetValue(), text, lname, value)
		}
		if want := strings.TrimLeft(strings.ToValidUTF8(help, "\uFFFD"), " \t"); mf.GetHelp() != want {
			t.Errorf("help %q from %q, want %q", mf.GetHelp(), text, want)
		}
	})
}

// FuzzNames: metric and label names are translated as otlptranslator
// (which the otel exporter uses) translates them by default.
func FuzzNames(f *testing.F) {
	for _, s := range [][2]string{
		{"mcp.server.operation.duration", "s"}, {"already_total", "ms"}, {"transfer.rate", "By/s"},
		{"cache.hit", "1"}, {"a__b..c", "{req}/min"}, {"9lives", "%"}, {"__x__", "KiBy/d"}, {"___", ""},
		{"x", "/s"}, {"x", "s/"}, {"seconds.taken", "s"}, {"é", "per"},
	} {
		f.Add(s[0], s[1])
	}
	namer := otlptranslator.NewMetricNamer("", otlptranslator.UnderscoreEscapingWithSuffixes)
	labels := otlptranslator.LabelNamer{}
	types := map[instrumentKind]otlptranslator.MetricType{
		kindGauge:             otlptranslator.MetricTypeGauge,
		kindMonotonicCounter:  otlptranslator.MetricTypeMonotonicCounter,
		kindNonMonotonicCount: otlptranslator.MetricTypeNonMonotonicCounter,
		kindHistogram:         otlptranslator.MetricTypeHistogram,
	}
	f.Fuzz(func(t *testing.T, name, unit string) {
		for kind, typ := range types {
			got, err := metricName(name, unit, kind)
			want, werr := namer.Build(otlptranslator.Metric{Name: name, Unit: unit, Type: typ})
			if got != want || (err == nil) != (werr == nil) {
				t.Errorf("metricName(%q, %q, %v) = %q, %v; otlptranslator: %q, %v", name, unit, kind, got, err, want, werr)
			}
		}
		got, err := labelName(name)
		want, werr := labels.Build(name)
		if werr == nil && strings.HasPrefix(want, "__") {
			// client_golang refuses a reserved label name; so do we.
			want, werr = "", errEmptyName
		}
		if got != want || (err == nil) != (werr == nil) {
			t.Errorf("labelName(%q) = %q, %v; otlptranslator: %q, %v", name, got, err, want, werr)
		}
	})
}
