package promtext

import (
	"errors"
	"slices"
	"strings"
)

// The translation below is that of github.com/prometheus/otlptranslator
// v1.0.0 (Apache-2.0) as go.opentelemetry.io/otel/exporters/prometheus
// v0.69.0 configures it by default: UnderscoreEscapingWithSuffixes, no
// namespace. Only that strategy is kept.

// instrumentKind is what a metric's name depends on beyond its name and unit.
type instrumentKind int

const (
	kindGauge             instrumentKind = iota // a gauge or a non-monotonic sum
	kindMonotonicCounter                        // a monotonic sum: _total
	kindNonMonotonicCount                       // an up-down counter: no suffix, no _ratio
	kindHistogram
)

// unitNames are the OpenTelemetry (UCUM) units with a Prometheus word.
var unitNames = map[string]string{
	"d": "days", "h": "hours", "min": "minutes", "s": "seconds", "ms": "milliseconds", "us": "microseconds", "ns": "nanoseconds",
	"By": "bytes", "KiBy": "kibibytes", "MiBy": "mebibytes", "GiBy": "gibibytes", "TiBy": "tibibytes",
	"KBy": "kilobytes", "MBy": "megabytes", "GBy": "gigabytes", "TBy": "terabytes",
	"m": "meters", "V": "volts", "A": "amperes", "J": "joules", "W": "watts", "g": "grams",
	"Cel": "celsius", "Hz": "hertz", "1": "", "%": "percent",
}

// perUnitNames are the units after a "/".
var perUnitNames = map[string]string{
	"s": "second", "m": "minute", "h": "hour", "d": "day", "w": "week", "mo": "month", "y": "year",
}

func isMetricNameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == ':'
}

func isLabelNameChar(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9'
}

var errEmptyName = errors.New("name is empty or only underscores")

// metricName is the Prometheus name of an instrument: its name's runs of
// [a-zA-Z0-9:] joined by "_", then the unit's words, then _total for a
// monotonic counter or _ratio for a gauge of unit "1"; "_" in front of a
// leading digit. A name that leaves nothing but underscores is an error.
func metricName(name, unit string, kind instrumentKind) (string, error) {
	tokens := strings.FieldsFunc(name, func(r rune) bool { return !isMetricNameChar(r) })
	main, per := unitSuffixes(unit)
	main, per = cleanUnit(main), cleanUnit(per)
	if slices.Contains(tokens, main) {
		main = ""
	}
	if per == "per_" {
		per = ""
	} else {
		per = strings.TrimSuffix(per, "_")
		if slices.Contains(tokens, per) {
			per = ""
		}
	}
	if per != "" {
		main = strings.TrimSuffix(main, "_")
	}
	if main != "" {
		tokens = append(tokens, main)
	}
	if per != "" {
		tokens = append(tokens, per)
	}
	switch {
	case kind == kindMonotonicCounter:
		tokens = append(slices.DeleteFunc(tokens, func(t string) bool { return t == "total" }), "total")
	case unit == "1" && kind == kindGauge:
		tokens = append(slices.DeleteFunc(tokens, func(t string) bool { return t == "ratio" }), "ratio")
	}
	out := strings.Join(tokens, "_")
	if out != "" && out[0] >= '0' && out[0] <= '9' {
		out = "_" + out
	}
	if out == "" || out != name && strings.Trim(out, "_") == "" {
		return "", errEmptyName
	}
	return out, nil
}

// unitSuffixes splits a unit at its first "/" into the Prometheus words of
// each side; an annotation ({request}) or a blank side has none.
func unitSuffixes(unit string) (main, per string) {
	mainUnit, perUnit, hasPer := strings.Cut(unit, "/")
	if u := strings.TrimSpace(mainUnit); u != "" && !strings.ContainsAny(u, "{}") {
		main = u
		if w, ok := unitNames[u]; ok {
			main = w
		}
	}
	if hasPer && perUnit != "" {
		if u := strings.TrimSpace(perUnit); u != "" && !strings.ContainsAny(u, "{}") {
			per = u
			if w, ok := perUnitNames[u]; ok {
				per = w
			}
		}
		if per != "" {
			per = "per_" + per
		}
	}
	return main, per
}

// cleanUnit maps characters outside [a-zA-Z0-9:] to "_", collapses runs of
// "_" and drops a leading one.
func cleanUnit(u string) string {
	var b strings.Builder
	prev := false
	for _, r := range u {
		if !isMetricNameChar(r) {
			r = '_'
		}
		if r == '_' && prev {
			continue
		}
		prev = r == '_'
		b.WriteRune(r)
	}
	return strings.TrimPrefix(b.String(), "_")
}

// labelName is the Prometheus name of an attribute key: characters outside
// [a-zA-Z0-9] become "_" (a run of them one "_"), "key_" goes in front of a
// leading digit. A key that leaves nothing but underscores, or a name
// starting with "__" (reserved for Prometheus's own labels, which
// client_golang refused), is an error.
func labelName(key string) (string, error) {
	if key == "" {
		return "", errEmptyName
	}
	reserved := len(key) >= 4 && strings.HasPrefix(key, "__") && strings.HasSuffix(key, "__")
	s := key
	if reserved {
		s = key[2 : len(key)-2]
	}
	var b strings.Builder
	b.Grow(len(s) + 4)
	if reserved {
		b.WriteString("__")
	}
	prev := false
	for _, r := range s {
		if isLabelNameChar(r) {
			b.WriteRune(r)
			prev = false
		} else if !prev {
			b.WriteByte('_')
			prev = true
		}
	}
	if reserved {
		b.WriteString("__")
	}
	out := b.String()
	if out[0] >= '0' && out[0] <= '9' {
		out = "key_" + out
	}
	if strings.Trim(out, "_") == "" || strings.HasPrefix(out, "__") {
		return "", errEmptyName
	}
	return out, nil
}
