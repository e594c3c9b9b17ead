package promtext

import (
	"bytes"
	"cmp"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// metricType is a family's # TYPE.
type metricType uint8

const (
	typeGauge metricType = iota
	typeCounter
	typeHistogram
	typeSummary
)

func (t metricType) String() string {
	switch t {
	case typeCounter:
		return "counter"
	case typeHistogram:
		return "histogram"
	case typeSummary:
		return "summary"
	}
	return "gauge"
}

// A family is every series of one name: what a # HELP and # TYPE head.
type family struct {
	name   string
	help   string
	typ    metricType
	series []series
}

// A label is one name="value" pair; a series' labels are sorted by name.
type label struct{ name, value string }

// A series is one line of a counter or gauge, or the lines of one
// histogram or summary.
type series struct {
	labels []label
	value  float64
	// histogram: bounds[i] is le of cumulative[i]; +Inf is count.
	// summary: bounds are the quantiles, values[i] their values.
	bounds     []float64
	cumulative []uint64
	values     []float64
	count      uint64
	sum        float64
}

// sortSeries orders a family's series as client_golang's registry does
// (internal.MetricSorter): by the number of labels, then label value by
// label value, names aside.
func sortSeries(s []series) {
	slices.SortStableFunc(s, func(a, b series) int {
		if c := cmp.Compare(len(a.labels), len(b.labels)); c != 0 {
			return c
		}
		for i := range a.labels {
			if c := strings.Compare(a.labels[i].value, b.labels[i].value); c != 0 {
				return c
			}
		}
		return 0
	})
}

// writeFamily writes f in the text format 0.0.4; a family without series
// writes nothing.
func writeFamily(w *bytes.Buffer, f *family) {
	if len(f.series) == 0 {
		return
	}
	w.WriteString("# HELP ")
	w.WriteString(f.name)
	w.WriteByte(' ')
	writeEscaped(w, f.help, false)
	w.WriteString("\n# TYPE ")
	w.WriteString(f.name)
	w.WriteByte(' ')
	w.WriteString(f.typ.String())
	w.WriteByte('\n')
	for i := range f.series {
		s := &f.series[i]
		switch f.typ {
		case typeHistogram:
			for j, le := range s.bounds {
				writeSample(w, f.name, "_bucket", s.labels, "le", le, float64(s.cumulative[j]))
			}
			if len(s.bounds) == 0 || !math.IsInf(s.bounds[len(s.bounds)-1], +1) {
				writeSample(w, f.name, "_bucket", s.labels, "le", math.Inf(+1), float64(s.count))
			}
			writeSample(w, f.name, "_sum", s.labels, "", 0, s.sum)
			writeSample(w, f.name, "_count", s.labels, "", 0, float64(s.count))
		case typeSummary:
			for j, q := range s.bounds {
				writeSample(w, f.name, "", s.labels, "quantile", q, s.values[j])
			}
			writeSample(w, f.name, "_sum", s.labels, "", 0, s.sum)
			writeSample(w, f.name, "_count", s.labels, "", 0, float64(s.count))
		default:
			writeSample(w, f.name, "", s.labels, "", 0, s.value)
		}
	}
}

// writeSample writes one line: name+suffix, the labels and, when extra is
// set, extra="extraValue" after them (le, quantile), then the value.
func writeSample(w *bytes.Buffer, name, suffix string, labels []label, extra string, extraValue, value float64) {
	w.WriteString(name)
	w.WriteString(suffix)
	if len(labels) > 0 || extra != "" {
		sep := byte('{')
		for _, l := range labels {
			w.WriteByte(sep)
			w.WriteString(l.name)
			w.WriteString(`="`)
			writeEscaped(w, l.value, true)
			w.WriteByte('"')
			sep = ','
		}
		if extra != "" {
			w.WriteByte(sep)
			w.WriteString(extra)
			w.WriteString(`="`)
			writeFloat(w, extraValue)
			w.WriteByte('"')
		}
		w.WriteByte('}')
	}
	w.WriteByte(' ')
	writeFloat(w, value)
	w.WriteByte('\n')
}

// writeEscaped writes s with \ and newline escaped, and " too inside a
// label value (the format's only escapes). Invalid UTF-8 is written as
// U+FFFD: the format is UTF-8, and client_golang refused such a value.
func writeEscaped(w *bytes.Buffer, s string, quoted bool) {
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	start := 0
	for i := 0; i < len(s); i++ {
		var esc string
		switch s[i] {
		case '\\':
			esc = `\\`
		case '\n':
			esc = `\n`
		case '"':
			if !quoted {
				continue
			}
			esc = `\"`
		default:
			continue
		}
		w.WriteString(s[start:i])
		w.WriteString(esc)
		start = i + 1
	}
	w.WriteString(s[start:])
}

// writeFloat writes f as Prometheus does: +Inf, -Inf, NaN, otherwise the
// shortest representation that reads back as f ('g', -1).
func writeFloat(w *bytes.Buffer, f float64) {
	switch {
	case f == 0:
		w.WriteByte('0')
	case math.IsNaN(f):
		w.WriteString("NaN")
	case math.IsInf(f, +1):
		w.WriteString("+Inf")
	case math.IsInf(f, -1):
		w.WriteString("-Inf")
	default:
		w.Write(strconv.AppendFloat(w.AvailableBuffer(), f, 'g', -1, 64))
	}
}
