package promtext

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"slices"
	"strings"
	"sync"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/resource"
)

// bridgeScope is the scope of metrics bridged from client_golang, which the
// otel exporter skips (they would be scraped twice); so does this one.
const bridgeScope = "go.opentelemetry.io/contrib/bridges/prometheus"

// Exporter reads a MeterProvider's metrics at each scrape and writes them,
// with the Go runtime's and the process's when asked, in the text format.
// Its methods are safe for concurrent use; scrapes are serialised.
type Exporter struct {
	reader  *sdkmetric.ManualReader
	runtime func() []family // nil: no go_* and process_* families

	mu sync.Mutex
	rm metricdata.ResourceMetrics // the last scrape's, its slices reused by the next
	// known is the type and help of every name seen, as the otel exporter
	// keeps them: an instrument whose name another kind already took is
	// left out; one with another description gets the first one's.
	known      map[string]*family
	labelNames map[string]string // attribute key → label name, "" if it has none
	targetInfo *family
}

// Option configures an Exporter.
type Option func(*Exporter)

// WithRuntime adds the go_* and process_* families client_golang's Go and
// process collectors write (go_goroutines, go_memstats_*, go_gc_duration_seconds,
// process_resident_memory_bytes, process_cpu_seconds_total, ...). What
// they need is set up by the first scrape, not by New: nothing reads them
// before, and a sidecar's start is the cost that matters (issue #18).
func WithRuntime() Option {
	return func(e *Exporter) {
		var once sync.Once
		var r *runtimeReader
		e.runtime = func() []family {
			once.Do(func() { r = newRuntimeReader() })
			return r.read()
		}
	}
}

// maxLabelNames bounds the cache of translated attribute keys; the keys
// are the code's own, a few dozen.
const maxLabelNames = 1024

// New returns an Exporter; pass Reader to the MeterProvider.
func New(opts ...Option) *Exporter {
	e := &Exporter{
		reader:     sdkmetric.NewManualReader(),
		known:      map[string]*family{},
		labelNames: map[string]string{},
	}
	for _, o := range opts {
		o(e)
	}
	return e
}

// Reader is what the MeterProvider is given (sdkmetric.WithReader); it is
// read by each scrape and by nothing else.
func (e *Exporter) Reader() sdkmetric.Reader { return e.reader }

// render collects one exposition into b. The lock is held while the
// SDK is read and the text built, not while it is sent: a scraper that
// reads slowly holds up no other.
func (e *Exporter) render(ctx context.Context, b *bytes.Buffer) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	fams, err := e.collect(ctx)
	if e.runtime != nil {
		for _, f := range e.runtime() {
			fams[f.name] = &f
		}
	}
	names := make([]string, 0, len(fams))
	for n := range fams {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		f := fams[n]
		sortSeries(f.series)
		writeFamily(b, f)
	}
	return err
}

// collect reads the SDK into families by name. A reader shut down yields
// none; any other error is returned with what could be read.
func (e *Exporter) collect(ctx context.Context) (map[string]*family, error) {
	fams := map[string]*family{}
	err := e.reader.Collect(ctx, &e.rm)
	if errors.Is(err, sdkmetric.ErrReaderShutdown) {
		return fams, nil
	}
	if e.targetInfo == nil && e.rm.Resource != nil {
		e.targetInfo = e.newTargetInfo(e.rm.Resource)
	}
	if e.targetInfo != nil {
		// A copy: an instrument named target_info adds its series to this
		// scrape's family, not to the one kept for the next.
		ti := *e.targetInfo
		ti.series = slices.Clip(ti.series)
		fams[ti.name] = &ti
	}
	// The SDK hands scopes over in no fixed order; in this one, the HELP
	// of a name two scopes share is the same from one scrape, and one
	// process, to the next.
	slices.SortStableFunc(e.rm.ScopeMetrics, func(a, b metricdata.ScopeMetrics) int {
		return cmp.Or(strings.Compare(a.Scope.Name, b.Scope.Name), strings.Compare(a.Scope.Version, b.Scope.Version),
			strings.Compare(a.Scope.SchemaURL, b.Scope.SchemaURL))
	})
	for _, sm := range e.rm.ScopeMetrics {
		if sm.Scope.Name == bridgeScope {
			continue
		}
		scope := []label{
			{"otel_scope_name", sm.Scope.Name},
			{"otel_scope_version", sm.Scope.Version},
			{"otel_scope_schema_url", sm.Scope.SchemaURL},
		}
		attrs, ok := e.labels(sm.Scope.Attributes, "otel_scope_", true)
		if !ok {
			continue
		}
		scope = append(scope, attrs...)
		for _, m := range sm.Metrics {
			e.addMetric(fams, m, scope)
		}
	}
	return fams, err
}

func (e *Exporter) newTargetInfo(res *resource.Resource) *family {
	labels, ok := e.labels(*res.Set(), "", false)
	if !ok {
		return nil
	}
	sortLabels(labels)
	return &family{name: "target_info", help: "Target metadata", typ: typeGauge, series: []series{{labels: labels, value: 1}}}
}

// addMetric adds m's data points to their family, each labelled with its
// attributes and scope. A metric whose name cannot be translated, or whose
// name a metric of another type already has, or whose lines a histogram's
// would share (name_count beside a histogram name), is left out; so is a data
// point whose attributes cannot be labels (the otel exporter failed the
// whole scrape for those).
func (e *Exporter) addMetric(fams map[string]*family, m metricdata.Metrics, scope []label) {
	kind, typ, ok := kinds(m.Data)
	if !ok {
		return
	}
	name, err := metricName(m.Name, m.Unit, kind)
	if err != nil {
		return
	}
	k := e.known[name]
	if k == nil {
		if e.collides(name, typ) {
			return
		}
		k = &family{name: name, help: m.Description, typ: typ}
		e.known[name] = k
	} else if k.typ != typ {
		return
	}
	f := fams[name]
	if f == nil {
		f = &family{name: name, help: k.help, typ: typ}
		fams[name] = f
	}
	switch d := m.Data.(type) {
	case metricdata.Gauge[int64]:
		addPoints(e, f, d.DataPoints, scope)
	case metricdata.Gauge[float64]:
		addPoints(e, f, d.DataPoints, scope)
	case metricdata.Sum[int64]:
		addPoints(e, f, d.DataPoints, scope)
	case metricdata.Sum[float64]:
		addPoints(e, f, d.DataPoints, scope)
	case metricdata.Histogram[int64]:
		addHistograms(e, f, d.DataPoints, scope)
	case metricdata.Histogram[float64]:
		addHistograms(e, f, d.DataPoints, scope)
	case metricdata.ExponentialHistogram[int64]:
		addExponential(e, f, d.DataPoints, scope)
	case metricdata.ExponentialHistogram[float64]:
		addExponential(e, f, d.DataPoints, scope)
	}
}

// histogramSuffixes name a histogram's series beside its own name.
var histogramSuffixes = []string{"_bucket", "_sum", "_count"}

// collides reports whether a new family named name would share the name
// of its lines with a known family: a histogram's name_count, name_sum
// or name_bucket (client_golang refused both, failing the scrape).
func (e *Exporter) collides(name string, typ metricType) bool {
	for _, s := range histogramSuffixes {
		if typ == typeHistogram && e.known[name+s] != nil {
			return true
		}
		if base, ok := strings.CutSuffix(name, s); ok && e.known[base] != nil && e.known[base].typ == typeHistogram {
			return true
		}
	}
	return false
}

// kinds is how an aggregation is named and typed.
func kinds(data metricdata.Aggregation) (instrumentKind, metricType, bool) {
	switch d := data.(type) {
	case metricdata.Gauge[int64], metricdata.Gauge[float64]:
		return kindGauge, typeGauge, true
	case metricdata.Sum[int64]:
		return sumKind(d.IsMonotonic)
	case metricdata.Sum[float64]:
		return sumKind(d.IsMonotonic)
	case metricdata.Histogram[int64], metricdata.Histogram[float64],
		metricdata.ExponentialHistogram[int64], metricdata.ExponentialHistogram[float64]:
		return kindHistogram, typeHistogram, true
	}
	return 0, 0, false
}

func sumKind(monotonic bool) (instrumentKind, metricType, bool) {
	if monotonic {
		return kindMonotonicCounter, typeCounter, true
	}
	return kindNonMonotonicCount, typeGauge, true
}

func addPoints[N int64 | float64](e *Exporter, f *family, dps []metricdata.DataPoint[N], scope []label) {
	for _, dp := range dps {
		if labels, ok := e.pointLabels(dp.Attributes, scope); ok {
			f.series = append(f.series, series{labels: labels, value: float64(dp.Value)})
		}
	}
}

func addHistograms[N int64 | float64](e *Exporter, f *family, dps []metricdata.HistogramDataPoint[N], scope []label) {
	for _, dp := range dps {
		labels, ok := e.pointLabels(dp.Attributes, scope)
		if !ok || hasLe(labels) {
			continue
		}
		s := series{labels: labels, count: dp.Count, sum: float64(dp.Sum), bounds: dp.Bounds,
			cumulative: make([]uint64, len(dp.Bounds))}
		var c uint64
		for i := range dp.Bounds {
			c += dp.BucketCounts[i]
			s.cumulative[i] = c
		}
		f.series = append(f.series, s)
	}
}

func addExponential[N int64 | float64](e *Exporter, f *family, dps []metricdata.ExponentialHistogramDataPoint[N], scope []label) {
	for _, dp := range dps {
		if labels, ok := e.pointLabels(dp.Attributes, scope); ok && !hasLe(labels) {
			f.series = append(f.series, series{labels: labels, count: dp.Count, sum: float64(dp.Sum)})
		}
	}
}

// hasLe reports whether a histogram's labels hold le, which its buckets
// would then carry twice: a line the format's parsers refuse, failing the
// whole scrape.
func hasLe(labels []label) bool {
	return slices.ContainsFunc(labels, func(l label) bool { return l.name == "le" })
}

// pointLabels are a data point's attributes as labels, then the scope's,
// sorted by name.
func (e *Exporter) pointLabels(attrs attribute.Set, scope []label) ([]label, bool) {
	labels, ok := e.labels(attrs, "", false)
	if !ok {
		return nil, false
	}
	labels = append(labels, scope...)
	sortLabels(labels)
	for i := 1; i < len(labels); i++ {
		if labels[i].name == labels[i-1].name {
			return nil, false // an attribute named otel_scope_name: client_golang refused it
		}
	}
	return labels, true
}

// labels translates attributes to labels, prefix before each name. Keys
// that translate to one name get their values sorted and joined by ";".
// For scope attributes (isScope) name, version and schema_url are skipped:
// the otel_scope_ labels of those names are the scope's own.
func (e *Exporter) labels(attrs attribute.Set, prefix string, isScope bool) ([]label, bool) {
	out := make([]label, 0, attrs.Len()+3)
	var joined map[int][]string // index in out → every value of that name
	for it := attrs.Iter(); it.Next(); {
		kv := it.Attribute()
		name, ok := e.labelNames[string(kv.Key)]
		if !ok {
			name, _ = labelName(string(kv.Key))
			if len(e.labelNames) < maxLabelNames {
				e.labelNames[string(kv.Key)] = name
			}
		}
		if name == "" {
			return nil, false
		}
		if isScope && (name == "name" || name == "version" || name == "schema_url") {
			continue
		}
		name = prefix + name
		if i := slices.IndexFunc(out, func(l label) bool { return l.name == name }); i >= 0 {
			if joined == nil {
				joined = map[int][]string{}
			}
			if joined[i] == nil {
				joined[i] = []string{out[i].value}
			}
			joined[i] = append(joined[i], kv.Value.String())
			continue
		}
		out = append(out, label{name, kv.Value.String()})
	}
	for i, vals := range joined {
		slices.Sort(vals)
		out[i].value = strings.Join(vals, ";")
	}
	return out, true
}

func sortLabels(l []label) {
	slices.SortFunc(l, func(a, b label) int { return strings.Compare(a.name, b.name) })
}
