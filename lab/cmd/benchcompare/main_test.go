package main

import (
	"strings"
	"testing"

	"github.com/anycast-director/director/lab/compare"
)

// TestMadeByNamesPartialRuns: a report of a run narrowed with -n or -reps
// names the command that made it and says what it left out; a full run is
// make bench-compare's.
func TestMadeByNamesPartialRuns(t *testing.T) {
	full, err := scenarios(fullNs, "")
	if err != nil {
		t.Fatal(err)
	}
	if by, partial := madeBy(compare.Results{Scenarios: full, Reps: fullReps}); by != "make bench-compare" || partial != "" {
		t.Errorf("full run: by %q, partial %q", by, partial)
	}
	small, err := scenarios("100", "")
	if err != nil {
		t.Fatal(err)
	}
	by, partial := madeBy(compare.Results{Scenarios: small, Reps: 3})
	if by != "go run ./lab/cmd/benchcompare -n 100 -reps 3" || !strings.Contains(partial, "N = 100,1000") {
		t.Errorf("N=100 only: by %q, partial %q", by, partial)
	}
	shared, _ := scenarios(fullNs, "shared")
	if by, _ := madeBy(compare.Results{Scenarios: shared, Reps: fullReps}); !strings.HasSuffix(by, "-only shared") {
		t.Errorf("shared only: by %q", by)
	}
	by, partial = madeBy(compare.Results{Scenarios: full, Reps: fullReps, Only: compare.Directord})
	if by != "go run ./lab/cmd/benchcompare -n 100,1000 -reps 3 -daemon directord" || !strings.Contains(partial, "directord alone (no comparison)") {
		t.Errorf("directord alone: by %q, partial %q", by, partial)
	}
}
