package proxy

import (
	"testing"

	"mcpguard.dev/mcpguard/proxy/jsonrpc"
)

// TestCallToolsBound: past maxCallTools calls in flight note refuses (and the
// call is refused) instead of letting a result through unscreened by its rule.
func TestCallToolsBound(t *testing.T) {
	var ct callTools
	k := keyOf("s", nil, jsonrpc.ID{})
	if !ct.note(k, "fetch_url") {
		t.Fatal("note refused the first call")
	}
	if got := ct.take(k); got != "fetch_url" {
		t.Fatalf("take = %q, want fetch_url", got)
	}
	ct.n.Store(maxCallTools)
	if ct.note(k, "fetch_url") {
		t.Fatal("note accepted a call past maxCallTools")
	}
	if got := ct.take(k); got != "" {
		t.Fatalf("take after a refused note = %q, want nothing remembered", got)
	}
}
