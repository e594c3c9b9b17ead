package otlp

import (
	"errors"
	"fmt"

	"mcpguard.dev/mcpguard/internal/protowire"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// Field numbers of opentelemetry/proto/metrics/v1/metrics.proto and of
// ExportMetricsServiceRequest.
const (
	reqResourceMetrics = 1

	rmResource     = 1
	rmScopeMetrics = 2
	rmSchemaURL    = 3

	smScope     = 1
	smMetrics   = 2
	smSchemaURL = 3

	metricName        = 1
	metricDescription = 2
	metricUnit        = 3
	metricGauge       = 5
	metricSum         = 7
	metricHistogram   = 9
	metricExpHist     = 10
	metricSummary     = 11

	// Gauge, Sum, Histogram, ExponentialHistogram and Summary.
	dataPoints        = 1
	dataTemporality   = 2
	dataIsMonotonic   = 3
	temporalityDelta  = 1
	temporalityCumul  = 2
	numStart          = 2
	numTime           = 3
	numAsDouble       = 4
	numExemplars      = 5
	numAsInt          = 6
	numAttributes     = 7
	histCount         = 4
	histSum           = 5
	histBucketCounts  = 6
	histBounds        = 7
	histExemplars     = 8
	histAttributes    = 9
	histMin           = 11
	histMax           = 12
	expAttributes     = 1
	expScale          = 6
	expZeroCount      = 7
	expPositive       = 8
	expNegative       = 9
	expExemplars      = 11
	expMin            = 12
	expMax            = 13
	expZeroThreshold  = 14
	bucketsOffset     = 1
	bucketsCounts     = 2
	summaryCount      = 4
	summarySum        = 5
	summaryQuantiles  = 6
	summaryAttributes = 7
	quantileQuantile  = 1
	quantileValue     = 2

	exemplarTime       = 2
	exemplarAsDouble   = 3
	exemplarSpanID     = 4
	exemplarTraceID    = 5
	exemplarAsInt      = 6
	exemplarAttributes = 7
)

var (
	errUnknownAggregation = errors.New("unknown aggregation")
	errUnknownTemporality = errors.New("unknown temporality")
)

// appendMetrics appends rm as an ExportMetricsServiceRequest. A metric of
// an aggregation or temporality OTLP cannot carry is left out and named in
// the error; the rest is still encoded, as the official exporters do.
func appendMetrics(b buf, rm *metricdata.ResourceMetrics) (buf, error) {
	var errs []error
	r := b.open(reqResourceMetrics)
	res := b.open(rmResource)
	b.set(resourceAttributes, rm.Resource.Set())
	b.close(res)
	for _, sm := range rm.ScopeMetrics {
		s := b.open(rmScopeMetrics)
		b.scope(smScope, sm.Scope.Name, sm.Scope.Version, &sm.Scope.Attributes)
		for _, m := range sm.Metrics {
			start := len(b)
			if err := b.metric(m); err != nil {
				b = b[:start]
				errs = append(errs, fmt.Errorf("metric %q: %w", m.Name, err))
			}
		}
		b.str(smSchemaURL, sm.Scope.SchemaURL)
		b.close(s)
	}
	b.str(rmSchemaURL, rm.Resource.SchemaURL())
	b.close(r)
	return b, errors.Join(errs...)
}

func (b *buf) metric(m metricdata.Metrics) error {
	o := b.open(smMetrics)
	b.str(metricName, m.Name)
	b.str(metricDescription, m.Description)
	b.str(metricUnit, m.Unit)
	var err error
	switch a := m.Data.(type) {
	case metricdata.Gauge[int64]:
		gauge(b, a)
	case metricdata.Gauge[float64]:
		gauge(b, a)
	case metricdata.Sum[int64]:
		err = sum(b, a)
	case metricdata.Sum[float64]:
		err = sum(b, a)
	case metricdata.Histogram[int64]:
		err = histogram(b, a)
	case metricdata.Histogram[float64]:
		err = histogram(b, a)
	case metricdata.ExponentialHistogram[int64]:
		err = expHistogram(b, a)
	case metricdata.ExponentialHistogram[float64]:
		err = expHistogram(b, a)
	case metricdata.Summary:
		summary(b, a)
	default:
		err = fmt.Errorf("%w: %T", errUnknownAggregation, a)
	}
	b.close(o)
	return err
}

func temporality(t metricdata.Temporality) (uint64, error) {
	switch t {
	case metricdata.DeltaTemporality:
		return temporalityDelta, nil
	case metricdata.CumulativeTemporality:
		return temporalityCumul, nil
	}
	return 0, fmt.Errorf("%w: %s", errUnknownTemporality, t)
}

func gauge[N int64 | float64](b *buf, g metricdata.Gauge[N]) {
	m := b.open(metricGauge)
	numberPoints(b, g.DataPoints)
	b.close(m)
}

func sum[N int64 | float64](b *buf, s metricdata.Sum[N]) error {
	t, err := temporality(s.Temporality)
	if err != nil {
		return err
	}
	m := b.open(metricSum)
	numberPoints(b, s.DataPoints)
	b.uvarint(dataTemporality, t)
	if s.IsMonotonic {
		b.uvarint(dataIsMonotonic, 1)
	}
	b.close(m)
	return nil
}

func numberPoints[N int64 | float64](b *buf, pts []metricdata.DataPoint[N]) {
	for _, p := range pts {
		m := b.open(dataPoints)
		b.fixed64(numStart, unixNano(p.StartTime))
		b.fixed64(numTime, unixNano(p.Time))
		switch v := any(p.Value).(type) {
		case int64:
			b.sfixed64(numAsInt, v)
		case float64:
			b.double(numAsDouble, v)
		}
		exemplars(b, numExemplars, p.Exemplars)
		b.set(numAttributes, &p.Attributes)
		b.close(m)
	}
}

func histogram[N int64 | float64](b *buf, h metricdata.Histogram[N]) error {
	t, err := temporality(h.Temporality)
	if err != nil {
		return err
	}
	m := b.open(metricHistogram)
	for _, p := range h.DataPoints {
		d := b.open(dataPoints)
		b.fixed64(numStart, unixNano(p.StartTime))
		b.fixed64(numTime, unixNano(p.Time))
		b.fixed64(histCount, p.Count)
		b.double(histSum, float64(p.Sum))
		b.packedFixed64(histBucketCounts, p.BucketCounts)
		b.packedDouble(histBounds, p.Bounds)
		exemplars(b, histExemplars, p.Exemplars)
		b.set(histAttributes, &p.Attributes)
		if v, ok := p.Min.Value(); ok {
			b.double(histMin, float64(v))
		}
		if v, ok := p.Max.Value(); ok {
			b.double(histMax, float64(v))
		}
		b.close(d)
	}
	b.uvarint(dataTemporality, t)
	b.close(m)
	return nil
}

func expHistogram[N int64 | float64](b *buf, h metricdata.ExponentialHistogram[N]) error {
	t, err := temporality(h.Temporality)
	if err != nil {
		return err
	}
	m := b.open(metricExpHist)
	for _, p := range h.DataPoints {
		d := b.open(dataPoints)
		b.set(expAttributes, &p.Attributes)
		b.fixed64(numStart, unixNano(p.StartTime))
		b.fixed64(numTime, unixNano(p.Time))
		b.fixed64(histCount, p.Count)
		b.double(histSum, float64(p.Sum))
		b.sint32(expScale, p.Scale)
		b.fixed64(expZeroCount, p.ZeroCount)
		buckets(b, expPositive, p.PositiveBucket)
		buckets(b, expNegative, p.NegativeBucket)
		exemplars(b, expExemplars, p.Exemplars)
		if v, ok := p.Min.Value(); ok {
			b.double(expMin, float64(v))
		}
		if v, ok := p.Max.Value(); ok {
			b.double(expMax, float64(v))
		}
		b.doubleNonZero(expZeroThreshold, p.ZeroThreshold)
		b.close(d)
	}
	b.uvarint(dataTemporality, t)
	b.close(m)
	return nil
}

func buckets(b *buf, n protowire.Number, bk metricdata.ExponentialBucket) {
	m := b.open(n)
	b.sint32(bucketsOffset, bk.Offset)
	b.packedVarint(bucketsCounts, bk.Counts)
	b.close(m)
}

func summary(b *buf, s metricdata.Summary) {
	m := b.open(metricSummary)
	for _, p := range s.DataPoints {
		d := b.open(dataPoints)
		b.fixed64(numStart, unixNano(p.StartTime))
		b.fixed64(numTime, unixNano(p.Time))
		b.fixed64(summaryCount, p.Count)
		b.doubleNonZero(summarySum, p.Sum)
		for _, q := range p.QuantileValues {
			qv := b.open(summaryQuantiles)
			b.doubleNonZero(quantileQuantile, q.Quantile)
			b.doubleNonZero(quantileValue, q.Value)
			b.close(qv)
		}
		b.set(summaryAttributes, &p.Attributes)
		b.close(d)
	}
	b.close(m)
}

func exemplars[N int64 | float64](b *buf, n protowire.Number, ex []metricdata.Exemplar[N]) {
	for _, e := range ex {
		m := b.open(n)
		b.fixed64(exemplarTime, unixNano(e.Time))
		switch v := any(e.Value).(type) {
		case int64:
			b.sfixed64(exemplarAsInt, v)
		case float64:
			b.double(exemplarAsDouble, v)
		}
		b.bytes(exemplarSpanID, e.SpanID)
		b.bytes(exemplarTraceID, e.TraceID)
		b.keyValues(exemplarAttributes, e.FilteredAttributes)
		b.close(m)
	}
}
