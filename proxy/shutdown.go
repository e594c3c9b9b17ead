package proxy

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Shutdown drains the proxy and stops it, as http.Server.Shutdown does for
// a server: it is the whole graceful shutdown, in order.
//
//  1. New MCP requests are refused with 503 (another instance takes them);
//     what an agent sends to finish a call in flight is still taken:
//     answers to the gateway's requests (a tool that elicits or samples
//     mid-call) and notifications such as notifications/cancelled.
//  2. It waits until no call is in flight, then ends the long-lived streams
//     (GET, legacy SSE, subscriptions/listen) and waits for them. The
//     listener stays open meanwhile: closing it first (http.Server.Shutdown
//     does so at once) would leave a call that waits on its agent's answer
//     unable to finish, and ending the GET streams before makes clients
//     reconnect them, which go-sdk's takes for the end of its whole session
//     when refused (issue #8).
//  3. It closes the servers HTTPServer returned. When ctx ended before step
//     2 was done, the calls still in flight are given up, and each is
//     cancelled at the gateway with notifications/cancelled (within 3s), so
//     its tools do not go on working for an answer no one will read.
//  4. It ends every session at the gateway too (DELETE, within 3s): the
//     agents' sessions live in this process and end with it.
//
// It returns ctx's error when the drain timed out, nil otherwise. The
// servers are closed after at most finishGrace of http.Server.Shutdown:
// once nothing is served, what is still connected is idle, has not sent a
// whole request (which would only be refused, and for which Shutdown alone
// waits up to 5s, golang/go#22682), or is a response whose handler has
// returned but whose end net/http has not written yet (the last chunk of an
// ended stream): Close alone would cut that one short.
func (p *Proxy) Shutdown(ctx context.Context) error {
	p.draining.Store(true)
	if dl, ok := ctx.Deadline(); ok {
		p.log.Info("draining", "timeout", time.Until(dl).Round(time.Millisecond).String())
	} else {
		p.log.Info("draining")
	}
	err := p.waitIdle(ctx)
	if err != nil {
		p.log.Error("drain timed out; closing remaining connections", "err", err)
		p.abandoning.Store(true)
	}
	p.srvMu.Lock()
	if err == nil {
		p.finishResponses()
	}
	for _, srv := range p.servers {
		_ = srv.Close()
	}
	p.srvMu.Unlock()
	if err != nil {
		actx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		if werr := waitAll(actx, &p.calls, &p.telling); werr != nil {
			p.log.Warn("calls cut off at the drain timeout may not all be cancelled at the gateway", "err", werr)
		}
		cancel()
	}
	cctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	p.log.Info("sessions ended at the gateway", "sessions", p.closeSessions(cctx))
	cancel()
	return err
}

// waitIdle waits until no call is in flight, then ends the long-lived
// streams and waits for them to close; it returns early when ctx ends,
// with the streams ended.
func (p *Proxy) waitIdle(ctx context.Context) error {
	defer p.cancelStream()
	if err := p.calls.wait(ctx); err != nil {
		return err
	}
	p.cancelStream()
	return p.openStreams.wait(ctx)
}

// finishGrace bounds how long Shutdown lets the servers finish the
// responses whose handlers have returned; see Shutdown.
const finishGrace = 500 * time.Millisecond

// finishResponses shuts the servers down gracefully for at most
// finishGrace, so that every response whose handler has returned is
// written to its end. p.srvMu is held.
func (p *Proxy) finishResponses() {
	ctx, cancel := context.WithTimeout(context.Background(), finishGrace)
	defer cancel()
	var wg sync.WaitGroup
	for _, srv := range p.servers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = srv.Shutdown(ctx)
		}()
	}
	wg.Wait()
}

func waitAll(ctx context.Context, cs ...*counter) error {
	for _, c := range cs {
		if err := c.wait(ctx); err != nil {
			return err
		}
	}
	return nil
}

// closeSessions ends every session, at the gateway too (DELETE), at most
// 16 at a time, until ctx ends; it returns how many the gateway was asked to
// end.
func (p *Proxy) closeSessions(ctx context.Context) int {
	all := p.sessions.removeAll()
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	var asked atomic.Int64
	for _, s := range all {
		p.sessionEnded(s)
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			wg.Wait()
			return int(asked.Load())
		}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if p.closeSessionCtx(ctx, s, nil, closedShutdown) {
				asked.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(asked.Load())
}

// callBegun tells Config.Calls of a call starting, callEnded of its end.
func (p *Proxy) callBegun() {
	if p.cfg.Calls != nil {
		p.cfg.Calls.Begin()
	}
}

func (p *Proxy) callEnded() {
	if p.cfg.Calls != nil {
		p.cfg.Calls.End()
	}
}

// counter counts work in progress, and lets Shutdown wait for none without
// polling: the hot path is one atomic add; a waiter is woken by the add
// that reaches zero.
type counter struct {
	n       atomic.Int64
	waiters atomic.Int32
	mu      sync.Mutex
	zero    chan struct{} // signalled (closed and replaced) when n reaches 0 with waiters
}

func (c *counter) add(d int64) {
	if c.n.Add(d) == 0 && c.waiters.Load() > 0 {
		c.mu.Lock()
		if c.zero != nil {
			close(c.zero)
			c.zero = nil
		}
		c.mu.Unlock()
	}
}

// wait returns once the count is zero, or ctx's error when ctx ends first.
func (c *counter) wait(ctx context.Context) error {
	c.waiters.Add(1)
	defer c.waiters.Add(-1)
	for {
		c.mu.Lock()
		if c.zero == nil {
			c.zero = make(chan struct{})
		}
		zero := c.zero
		c.mu.Unlock()
		// Checked after the channel is in place: an add reaching zero
		// from now on closes it.
		if c.n.Load() <= 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-zero:
		}
	}
}
