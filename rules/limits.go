package rules

import (
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"
)

// limitSpec is a compiled Limits.
type limitSpec struct {
	rate        float64
	burst       float64
	calls       int
	window      time.Duration
	perIdentity bool
}

func compileLimits(el *errorList, fp string, l *Limits) *limitSpec {
	if l == nil {
		return nil
	}
	out := &limitSpec{rate: l.Rate, calls: l.Calls, perIdentity: true}
	if l.Rate < 0 || math.IsInf(l.Rate, 0) || math.IsNaN(l.Rate) {
		el.add(fp+".rate", "is %v; write calls per second, above 0", l.Rate)
	}
	if l.Burst < 0 {
		el.add(fp+".burst", "is %d; write a positive size", l.Burst)
	}
	out.burst = float64(l.Burst)
	if out.burst == 0 {
		out.burst = math.Max(1, math.Ceil(l.Rate))
	}
	if l.Calls < 0 {
		el.add(fp+".calls", "is %d; write a positive budget", l.Calls)
	}
	switch {
	case l.Calls > 0:
		w, err := time.ParseDuration(l.Window)
		if err != nil || w <= 0 {
			el.add(fp+".window", "is %q; write the budget's period as a Go duration, e.g. \"1h\"", l.Window)
		}
		out.window = w
	case l.Window != "":
		el.add(fp+".window", "is set but calls is not; write the budget (calls) for the window")
	}
	switch l.Per {
	case "", "identity":
	case "tool":
		out.perIdentity = false
	default:
		el.add(fp+".per", "is %q; write \"identity\" or \"tool\"", l.Per)
	}
	if l.Rate == 0 && l.Calls == 0 {
		el.add(fp, "limits nothing; give rate or calls")
	}
	return out
}

// limitState is one bucket and budget. Engines keep them across reloads,
// keyed by rule id and caller, so a reload neither refills a bucket nor
// resets a budget.
type limitState struct {
	mu          sync.Mutex
	tokens      float64
	last        time.Time
	windowStart time.Time
	used        int
}

// maxLimitStates bounds the buckets an engine keeps: past it, callers
// without a bucket of their own share one per rule.
const maxLimitStates = 1 << 16

// limitKey names the caller a per-identity limit counts: the credential's
// hash when the proxy knows one, else the pod's ServiceAccount.
func limitKey(id Identity) string {
	switch {
	case id.Subject != "":
		return "sub:" + id.Subject
	case id.ServiceAccount != "":
		return "sa:" + id.Namespace + "/" + id.ServiceAccount
	}
	return "anonymous"
}

// admit counts an allowed call against its rule's limits, or denies it with
// when to retry.
func (e *Engine) admit(r *rule, in *Input, allowed Decision) Decision {
	ls := r.limits
	key := r.id + "\x00"
	if ls.perIdentity {
		key += limitKey(in.Identity)
	}
	now := time.Now()
	if e.now != nil {
		now = e.now()
	}
	v, ok := e.limits.Load(key)
	if !ok {
		if e.nlimits.Load() >= maxLimitStates {
			key = r.id + "\x00overflow"
		}
		fresh := &limitState{tokens: ls.burst, last: now, windowStart: now}
		var loaded bool
		if v, loaded = e.limits.LoadOrStore(key, fresh); !loaded {
			e.nlimits.Add(1)
		}
	}
	st := v.(*limitState)
	st.mu.Lock()
	defer st.mu.Unlock()
	if ls.calls > 0 {
		if now.Sub(st.windowStart) >= ls.window {
			st.windowStart, st.used = now, 0
		}
		if st.used >= ls.calls {
			wait := st.windowStart.Add(ls.window).Sub(now)
			return Decision{Rule: r.id + "/limit", RetryAfter: wait,
				Reason: fmt.Sprintf("the budget of rule %q (%d calls per %v) is spent for this caller; retry after %s", r.id, ls.calls, ls.window, roundUp(wait))}
		}
	}
	if ls.rate > 0 {
		st.tokens = math.Min(ls.burst, st.tokens+now.Sub(st.last).Seconds()*ls.rate)
		st.last = now
		if st.tokens < 1 {
			wait := time.Duration((1 - st.tokens) / ls.rate * float64(time.Second))
			return Decision{Rule: r.id + "/limit", RetryAfter: wait,
				Reason: fmt.Sprintf("rule %q allows %s calls per second (burst %s) per caller; retry after %s", r.id, strconv.FormatFloat(ls.rate, 'f', -1, 64), strconv.FormatFloat(ls.burst, 'f', -1, 64), roundUp(wait))}
		}
		st.tokens--
	}
	if ls.calls > 0 {
		st.used++
	}
	return allowed
}

func roundUp(d time.Duration) string {
	if d < time.Millisecond {
		return "1ms"
	}
	return d.Round(time.Millisecond).String()
}
