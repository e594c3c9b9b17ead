package proxy

import (
	"encoding/json"
	"fmt"
	"testing"
	"testing/synctest"
	"time"
)

func TestSessionExpiry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		tab := newSessions(10, time.Minute)
		idle, _ := tab.create("", credential{}, "2025-11-25", nil)
		busy, _ := tab.create("", credential{}, "2025-11-25", nil)
		busy.begin() // a long call in flight keeps its session alive

		time.Sleep(59 * time.Second)
		if _, err := tab.lookup(idle.id, ""); err != nil {
			t.Fatalf("session expired early: %v", err)
		}
		idle.begin()
		idle.end(time.Now()) // a call, and its session is fresh again
		time.Sleep(61 * time.Second)
		if _, err := tab.lookup(idle.id, ""); err == nil || err.status != 404 {
			t.Fatalf("idle session: lookup error = %v, want 404", err)
		}
		expired := tab.expire()
		if len(expired) != 1 || expired[0] != idle {
			t.Fatalf("expire() = %v, want only the idle session", expired)
		}
		if _, err := tab.lookup(busy.id, ""); err != nil {
			t.Fatalf("busy session expired: %v", err)
		}
		busy.end(time.Now())
		time.Sleep(2 * time.Minute)
		if got := tab.expire(); len(got) != 1 || got[0] != busy {
			t.Fatalf("expire() after the call = %v, want the once-busy session", got)
		}
		if tab.count() != 0 {
			t.Fatalf("count = %d", tab.count())
		}
	})
}

func TestSessionLimitAndIDs(t *testing.T) {
	tab := newSessions(2, time.Minute)
	a, ok1 := tab.create("", credential{}, "v", nil)
	b, ok2 := tab.create("", credential{}, "v", nil)
	_, ok3 := tab.create("", credential{}, "v", nil)
	if !ok1 || !ok2 || ok3 {
		t.Fatalf("create results %v %v %v, want true true false", ok1, ok2, ok3)
	}
	if a.id == b.id || len(a.id) != 43 {
		t.Fatalf("ids %q %q: want distinct 256-bit base64url ids", a.id, b.id)
	}
}

func TestServerRequestBookkeeping(t *testing.T) {
	s := &session{}
	s.expect(`"s1"`)
	if s.answer(`"s2"`) {
		t.Fatal("answered an id never sent")
	}
	if !s.answer(`"s1"`) {
		t.Fatal("did not accept the answer to an outstanding request")
	}
	if s.answer(`"s1"`) {
		t.Fatal("accepted a second answer to one request")
	}
}

func TestRememberToolIsBounded(t *testing.T) {
	p := &pump{}
	for i := range maxKnownTools + 100 {
		p.rememberTool(fmt.Sprintf("tool_%d", i), json.RawMessage(`{}`))
	}
	p.rememberTool("tool_0", json.RawMessage(`{"v":2}`)) // known: updated, not counted again
	if n := p.toolCount.Load(); n != maxKnownTools {
		t.Fatalf("remembered %d tools, want the bound %d", n, maxKnownTools)
	}
	if tool, ok := p.tools.Load("tool_0"); !ok || string(tool.(*listedTool).def) != `{"v":2}` {
		t.Fatalf("tool_0 = %v, %v: a known tool's definition must be updated", tool, ok)
	}
	if _, ok := p.tools.Load(fmt.Sprintf("tool_%d", maxKnownTools+50)); ok {
		t.Fatal("a tool beyond the bound was remembered")
	}
}
