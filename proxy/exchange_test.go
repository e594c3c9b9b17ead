package proxy

import (
	"fmt"
	"testing"
)

// TestAwaited: the requests an exchange awaits read the same whether they
// are held in its few slots or, past them, in the map; removing one leaves
// every other, in any order.
func TestAwaited(t *testing.T) {
	for _, n := range []int{0, 1, 3, 4, 5, 9, 100} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			var a awaited
			want := map[string]string{}
			for i := range n {
				id, method := fmt.Sprint(i), fmt.Sprintf("m%d", i)
				a.add(id, method)
				want[id] = method
			}
			check := func(when string) {
				t.Helper()
				if a.len() != len(want) {
					t.Fatalf("%s: len %d, want %d", when, a.len(), len(want))
				}
				for i := range n + 1 {
					id := fmt.Sprint(i)
					m, ok := a.method(id)
					if wm, wok := want[id]; m != wm || ok != wok {
						t.Fatalf("%s: method(%s) = %q, %v; want %q, %v", when, id, m, ok, wm, wok)
					}
				}
			}
			check("added")
			// Out of order: the last, the first, then every third.
			for _, i := range append([]int{n - 1, 0}, func() (r []int) {
				for i := 1; i < n; i += 3 {
					r = append(r, i)
				}
				return r
			}()...) {
				id := fmt.Sprint(i)
				a.remove(id)
				delete(want, id)
				check("removed " + id)
			}
			a.remove("absent")
			check("removed an absent id")
			// Slots freed by removals are used again.
			a.add("again", "m")
			want["again"] = "m"
			if m, ok := a.method("again"); !ok || m != "m" || a.len() != len(want) {
				t.Fatalf("added again: %q %v, len %d, want %d", m, ok, a.len(), len(want))
			}
		})
	}
}
