package proxy

import (
	"strconv"
	"sync"
	"testing"
)

// TestCacheBuildsOnceAndStaysBounded: a key is built once, then read from
// the published map; past maxCached keys values are built per use and the
// map no longer grows. Readers and publishers run at once (run with -race).
func TestCacheBuildsOnceAndStaysBounded(t *testing.T) {
	var c cache[string, string]
	var mu sync.Mutex
	built := map[string]int{}
	build := func(k string) string {
		mu.Lock()
		built[k]++
		mu.Unlock()
		return "v" + k
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range maxCached + 100 {
				k := strconv.Itoa((i + g*7) % (maxCached + 100))
				if v := c.get(k, build); v != "v"+k {
					t.Errorf("get(%q) = %q, want %q", k, v, "v"+k)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := len(*c.m.Load()); n != maxCached {
		t.Fatalf("the cache holds %d keys, want the bound %d", n, maxCached)
	}
	// A cached key is not built again; one past the bound is, per use.
	var cached, uncached string
	for k := range *c.m.Load() {
		cached = k
		break
	}
	for i := range maxCached + 100 {
		if _, ok := (*c.m.Load())[strconv.Itoa(i)]; !ok {
			uncached = strconv.Itoa(i)
			break
		}
	}
	before := [2]int{built[cached], built[uncached]}
	c.get(cached, build)
	c.get(uncached, build)
	if got := [2]int{built[cached], built[uncached]}; got != [2]int{before[0], before[1] + 1} {
		t.Errorf("builds of a cached and an uncached key went from %v to %v, want %v", before, got, [2]int{before[0], before[1] + 1})
	}
}
