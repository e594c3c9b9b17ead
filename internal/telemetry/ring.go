package telemetry

import (
	"context"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Ring keeps the last N ended spans in memory, for `mcpguard traces` and the
// admin page when no collector runs. It is an SDK span processor, and the
// store of NewRingTracerProvider's spans.
//
// A kept span is not a heap object of its own: each slot holds a span's
// fixed fields (ids, times, kind) and one byte buffer with the rest (name,
// status description, attributes) encoded, and the buffer of the span it
// replaces goes back to be reused by a span still running (issue #18). A
// full ring is then one array and a buffer per slot with nothing in it to
// scan, instead of thousands of spans whose every attribute string the
// garbage collector follows, and keeping a span allocates nothing. Reading
// decodes what it returns.
//
// The slots are allocated ringChunk at a time, as spans first reach them:
// a ring of the default 2048 slots is ~210 KiB, which a sidecar that has
// kept no span yet would otherwise hold from its start (idle anonymous
// memory, #18).
type Ring struct {
	size   int
	chunks []atomic.Pointer[[ringChunk]slot] // nil until a span is kept in it
	next   atomic.Uint64                     // spans kept so far; a span's seq is its count
}

// ringChunk is how many slots are allocated at once (~6.5 KiB).
const ringChunk = 64

// slot is one kept span. mu is held by the writer replacing it and by a
// reader decoding it; two writers meet here only when the ring is lapped.
type slot struct {
	mu    sync.Mutex
	seq   uint64 // which span this is (1 for the first ever kept); 0: empty
	head  spanHead
	data  *[]byte    // name, status description and attributes (spanHead.attrs)
	extra *spanExtra // nil but for the rare span with events or odd attributes
}

// spanHead is a kept span's fixed part.
type spanHead struct {
	traceID    trace.TraceID
	spanID     trace.SpanID
	parentID   trace.SpanID
	hasParent  bool
	isErr      bool // status Error
	kind       trace.SpanKind
	start, end int64 // Unix nanoseconds
	attrs      int   // data[:attrs] are the encoded attributes; the name and status description follow
}

// spanExtra is what a span's data does not encode: its events, and
// attributes of kinds other than bool, int64, float64 and string (data
// refers to them by index), which the proxy never records.
type spanExtra struct {
	events []Event
	attrs  []attribute.KeyValue
}

var _ sdktrace.SpanProcessor = (*Ring)(nil)

// NewRing returns a ring keeping the last n spans (n > 0).
func NewRing(n int) *Ring {
	return &Ring{size: n, chunks: make([]atomic.Pointer[[ringChunk]slot], (n+ringChunk-1)/ringChunk)}
}

// Size returns how many spans the ring keeps.
func (r *Ring) Size() int { return r.size }

// slot returns slot i (< r.size), allocating its chunk on first use.
func (r *Ring) slot(i uint64) *slot {
	c := &r.chunks[i/ringChunk]
	p := c.Load()
	if p == nil {
		p = new([ringChunk]slot)
		if !c.CompareAndSwap(nil, p) {
			p = c.Load() // another writer allocated it first
		}
	}
	return &p[i%ringChunk]
}

// OnStart does nothing: only ended spans are kept.
func (r *Ring) OnStart(context.Context, sdktrace.ReadWriteSpan) {}

// OnEnd keeps a copy of s, replacing the oldest span once the ring is full.
func (r *Ring) OnEnd(s sdktrace.ReadOnlySpan) {
	sc := s.SpanContext()
	h := spanHead{traceID: sc.TraceID(), spanID: sc.SpanID(), kind: s.SpanKind(),
		start: s.StartTime().UnixNano(), end: s.EndTime().UnixNano()}
	if p := s.Parent(); p.IsValid() {
		h.parentID, h.hasParent = p.SpanID(), true
	}
	var extra *spanExtra
	data := getData()
	*data = appendAttrs(*data, s.Attributes(), &extra)
	h.attrs = len(*data)
	st := s.Status()
	h.isErr = st.Code == codes.Error
	*data = appendName(*data, s.Name(), st.Description)
	for _, e := range s.Events() {
		if extra == nil {
			extra = &spanExtra{}
		}
		extra.events = append(extra.events, Event{Name: e.Name, Time: e.Time, Attributes: attrMap(e.Attributes)})
	}
	r.keep(&h, data, extra)
}

// keep stores a span's head and data (which the ring now owns), and gives
// the data of the span it replaces back for reuse.
func (r *Ring) keep(h *spanHead, data *[]byte, extra *spanExtra) {
	seq := r.next.Add(1)
	sl := r.slot((seq - 1) % uint64(r.size))
	sl.mu.Lock()
	if sl.seq > seq {
		// Lapped while this span was being kept: a newer one has the slot.
		sl.mu.Unlock()
		putData(data)
		return
	}
	old := sl.data
	sl.seq, sl.head, sl.data, sl.extra = seq, *h, data, extra
	sl.mu.Unlock()
	if old != nil {
		putData(old)
	}
}

// Shutdown does nothing; the spans stay readable.
func (r *Ring) Shutdown(context.Context) error { return nil }

// ForceFlush does nothing: there is nothing to flush.
func (r *Ring) ForceFlush(context.Context) error { return nil }

// Spans returns the kept spans, oldest start first.
func (r *Ring) Spans() []Span {
	out := make([]Span, 0, min(int(r.next.Load()), r.size))
	for c := range r.chunks {
		p := r.chunks[c].Load()
		if p == nil {
			continue // no span kept there yet
		}
		for i := range min(ringChunk, r.size-c*ringChunk) {
			sl := &p[i]
			sl.mu.Lock()
			if sl.seq != 0 {
				out = append(out, sl.span())
			}
			sl.mu.Unlock()
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}

// span decodes the slot; the caller holds its lock.
func (sl *slot) span() Span {
	h, data := &sl.head, *sl.data
	name, desc := decodeName(data[h.attrs:])
	out := Span{TraceID: h.traceID.String(), SpanID: h.spanID.String(), Name: name, Kind: h.kind.String(),
		Start: time.Unix(0, h.start), End: time.Unix(0, h.end), Attributes: decodeAttrs(data[:h.attrs], sl.extra)}
	if h.hasParent {
		out.ParentSpanID = h.parentID.String()
	}
	if h.isErr {
		out.Error = desc
		if out.Error == "" {
			out.Error = "error"
		}
	}
	if sl.extra != nil {
		out.Events = sl.extra.events
	}
	return out
}

// Span is the JSON form of a kept span (GET /debug/traces).
type Span struct {
	TraceID      string         `json:"traceId"`
	SpanID       string         `json:"spanId"`
	ParentSpanID string         `json:"parentSpanId,omitempty"`
	Name         string         `json:"name"`
	Kind         string         `json:"kind"`
	Start        time.Time      `json:"start"`
	End          time.Time      `json:"end"`
	Error        string         `json:"error,omitempty"` // the status description of a span with status Error
	Attributes   map[string]any `json:"attributes,omitempty"`
	Events       []Event        `json:"events,omitempty"`
}

// Event is a span event.
type Event struct {
	Name       string         `json:"name"`
	Time       time.Time      `json:"time"`
	Attributes map[string]any `json:"attributes,omitempty"`
}

// Duration is End − Start.
func (s *Span) Duration() time.Duration { return s.End.Sub(s.Start) }

// Attr returns a string attribute, or "".
func (s *Span) Attr(key string) string {
	v, _ := s.Attributes[key].(string)
	return v
}
