// Package otlp exports spans and metrics over OTLP 1.x (protobuf over
// http/protobuf or gRPC) for the OpenTelemetry SDK's batch span processor
// and periodic reader. It stands in for the official otlptrace* and
// otlpmetric* exporters, reading the same OTEL_EXPORTER_OTLP_* variables,
// without linking grpc-go, grpc-gateway or the protobuf runtime: their
// package initialisation was a large share of a sidecar's start (issue
// #18), paid by every pod although most never export. Requests are
// encoded by hand with protowire, gRPC is a unary call framed by hand over
// net/http's HTTP/2.
//
// An export runs on the SDK's goroutine (never a proxied call's), bounded
// by the timeout, retries included.
package otlp

import (
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
)

// SpanExporter sends spans to an OTLP receiver.
type SpanExporter struct{ c *client }

var _ sdktrace.SpanExporter = (*SpanExporter)(nil)

// NewSpanExporter reads the OTEL_EXPORTER_OTLP_[TRACES_]* variables for
// protocol (GRPC or HTTPProtobuf). It connects to nothing before the
// first export.
func NewSpanExporter(protocol string) (*SpanExporter, error) {
	cfg, err := envConfig(Traces, protocol)
	if err != nil {
		return nil, err
	}
	return &SpanExporter{c: newClient(cfg)}, nil
}

// ExportSpans sends spans in one request.
func (e *SpanExporter) ExportSpans(ctx context.Context, spans []sdktrace.ReadOnlySpan) error {
	if len(spans) == 0 {
		return nil
	}
	b := getBuf()
	defer putBuf(b)
	*b = appendTraces((*b)[:0], spans)
	return e.c.export(ctx, *b, "spans")
}

// Shutdown stops the exporter: an export in flight is cancelled, later
// ones fail.
func (e *SpanExporter) Shutdown(ctx context.Context) error { return e.c.shutdown(ctx) }

// MetricExporter sends metrics to an OTLP receiver.
type MetricExporter struct {
	c           *client
	temporality sdkmetric.TemporalitySelector
	aggregation sdkmetric.AggregationSelector
}

var _ sdkmetric.Exporter = (*MetricExporter)(nil)

// NewMetricExporter reads the OTEL_EXPORTER_OTLP_[METRICS_]* variables for
// protocol (GRPC or HTTPProtobuf), including the temporality preference
// and default histogram aggregation.
func NewMetricExporter(protocol string) (*MetricExporter, error) {
	cfg, err := envConfig(Metrics, protocol)
	if err != nil {
		return nil, err
	}
	return &MetricExporter{c: newClient(cfg), temporality: cfg.temporality, aggregation: cfg.aggregation}, nil
}

// Temporality is OTEL_EXPORTER_OTLP_METRICS_TEMPORALITY_PREFERENCE's
// choice for k, cumulative by default.
func (e *MetricExporter) Temporality(k sdkmetric.InstrumentKind) metricdata.Temporality {
	return e.temporality(k)
}

// Aggregation is OTEL_EXPORTER_OTLP_METRICS_DEFAULT_HISTOGRAM_AGGREGATION's
// choice for k, the SDK's default otherwise.
func (e *MetricExporter) Aggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	return e.aggregation(k)
}

// Export sends rm in one request. A metric OTLP cannot carry is left out
// and named in the error; the others are still sent.
func (e *MetricExporter) Export(ctx context.Context, rm *metricdata.ResourceMetrics) error {
	b := getBuf()
	defer putBuf(b)
	var encErr error
	*b, encErr = appendMetrics((*b)[:0], rm)
	if err := e.c.export(ctx, *b, "data points"); err != nil {
		return errors.Join(fmt.Errorf("failed to upload metrics: %w", err), encErr)
	}
	return encErr
}

// ForceFlush has nothing to flush: Export sends at once.
func (*MetricExporter) ForceFlush(ctx context.Context) error { return ctx.Err() }

// Shutdown stops the exporter: an export in flight is cancelled, later
// ones fail.
func (e *MetricExporter) Shutdown(ctx context.Context) error { return e.c.shutdown(ctx) }

// ErrShutdown is returned by an export after Shutdown.
var ErrShutdown = errors.New("otlp: exporter is shut down")

// client sends encoded requests over one protocol, retrying what may
// succeed later.
type client struct {
	cfg  *config
	send func(ctx context.Context, body []byte) (resp []byte, err error)

	stop    context.Context
	stopped context.CancelFunc
	closed  atomic.Bool
	idle    func()
}

func newClient(cfg *config) *client {
	c := &client{cfg: cfg}
	c.stop, c.stopped = context.WithCancel(context.Background())
	if cfg.protocol == GRPC {
		c.send, c.idle = newGRPCSender(cfg)
	} else {
		c.send, c.idle = newHTTPSender(cfg)
	}
	return c
}

// export sends one request body, compressing it when configured, and
// reads a partial success from the answer. what names the request's items
// ("spans") in a partial success.
func (c *client) export(ctx context.Context, body []byte, what string) error {
	if c.closed.Load() {
		return ErrShutdown
	}
	if c.cfg.timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, c.cfg.timeout, errors.New("OTLP export timeout"))
		defer cancel()
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer context.AfterFunc(c.stop, cancel)()

	if c.cfg.gzip {
		z := getBuf()
		defer putBuf(z)
		w := bytes.NewBuffer((*z)[:0])
		gz := gzipPool.Get().(*gzip.Writer)
		gz.Reset(w)
		_, _ = gz.Write(body)
		_ = gz.Close()
		gz.Reset(nil)
		gzipPool.Put(gz)
		*z = w.Bytes()
		body = *z
	}

	var partial error
	err := c.cfg.retry.do(ctx, func(ctx context.Context) error {
		resp, err := c.send(ctx, body)
		if err != nil {
			return err
		}
		n, msg, err := partialSuccess(resp)
		if err != nil {
			// The data was accepted; only the answer is unreadable.
			partial = fmt.Errorf("OTLP export accepted, but its answer is not a valid response: %w", err)
		} else if n != 0 || msg != "" {
			partial = fmt.Errorf("OTLP partial success: %s (%d %s rejected)", msg, n, what)
		}
		return nil
	})
	if err != nil {
		return err
	}
	return partial
}

func (c *client) shutdown(ctx context.Context) error {
	if c.closed.Swap(true) {
		return ErrShutdown
	}
	c.stopped()
	c.idle()
	return ctx.Err()
}

var gzipPool = sync.Pool{New: func() any { return gzip.NewWriter(nil) }}

var bufPool = sync.Pool{New: func() any { b := make(buf, 0, 16<<10); return &b }}

func getBuf() *buf { return bufPool.Get().(*buf) }

func putBuf(b *buf) {
	if cap(*b) <= 1<<20 {
		bufPool.Put(b)
	}
}

// retryConfig is the official exporters' retry: exponential backoff from
// 5 s, ×1.5 with ±50 % jitter, at most 30 s apart and a minute in all; a
// server's requested delay (Retry-After, RetryInfo) is waited at least.
// The export's timeout bounds it all: a wait that would outlast it is not
// begun.
type retryConfig struct {
	initial, max, maxElapsed time.Duration
}

var defaultRetry = retryConfig{initial: 5 * time.Second, max: 30 * time.Second, maxElapsed: time.Minute}

// retryable is an error worth another attempt, after at least throttle.
type retryable struct {
	err      error
	throttle time.Duration
}

func (e *retryable) Error() string { return e.err.Error() }
func (e *retryable) Unwrap() error { return e.err }

func (r retryConfig) do(ctx context.Context, attempt func(context.Context) error) error {
	start := time.Now()
	interval := r.initial
	for {
		err := attempt(ctx)
		if err == nil {
			return nil
		}
		var re *retryable
		if !errors.As(err, &re) {
			return err
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%w: %w", context.Cause(ctx), err)
		}
		elapsed := time.Since(start)
		if elapsed > r.maxElapsed {
			return fmt.Errorf("max retry time elapsed: %w", err)
		}
		if elapsed+re.throttle > r.maxElapsed {
			return fmt.Errorf("max retry time would elapse: %w", err)
		}
		delay := max(re.throttle, jitter(interval))
		interval = min(time.Duration(float64(interval)*1.5), r.max)
		if d, ok := ctx.Deadline(); ok && time.Until(d) < delay {
			return fmt.Errorf("no time left to retry before the export timeout: %w", err)
		}
		t := time.NewTimer(delay)
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w: %w", context.Cause(ctx), err)
		case <-t.C:
		}
	}
}

func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}
