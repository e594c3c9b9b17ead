package rules

import (
	"context"
	"testing"
)

// TestPolicyFiles runs every testdata/*.yaml suite: each case is a call and
// the decision and rule the policy must give it.
func TestPolicyFiles(t *testing.T) {
	suites, err := LoadTests("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range suites {
		results, err := s.Run(context.Background())
		if err != nil {
			t.Fatalf("%s: %v", s.File, err)
		}
		t.Logf("%s: %d cases", s.File, len(results))
		for _, r := range results {
			if r.Diff != "" {
				t.Errorf("%s:%d: %s: %s", r.Suite, r.Line, r.Case, r.Diff)
			}
		}
	}
}
