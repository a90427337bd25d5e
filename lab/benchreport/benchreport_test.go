package benchreport

import (
	"strings"
	"testing"
	"time"
)

const sample = `goos: linux
BenchmarkCheckTCP-2          	   50000	     40000 ns/op	     0 failed	     12000 checks/s/core	     40000 checks/cpu-s
BenchmarkSchedulerTCP-2      	       1	4000000000 ns/op	  1.002 kept-up	  3 failed	  1.05 spread-steady
BenchmarkDaemonFootprint/remote-2         	       1	  30000000000 ns/op	 80.0 MB-rss	 12.5 %cpu-of-one-core
BenchmarkPlanAndDiff-2 	      10	  60000000 ns/op	        61.0 ms/plan+diff
PASS
`

func TestParseAndVerdicts(t *testing.T) {
	res, err := Parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if got := res["BenchmarkDaemonFootprint/remote"]["%cpu-of-one-core"]; got != 12.5 {
		t.Errorf("footprint cpu = %v, want 12.5 (sub-benchmark names keep their path, lose the -N)", got)
	}
	specs := []Spec{
		{Section: "s", Figure: "tcp/core", Bench: "BenchmarkCheckTCP", Metric: "checks/s/core", Op: ">=", Target: 10000, Format: "%.0f"},
		{Section: "s", Figure: "kept up", Bench: "BenchmarkSchedulerTCP", Metric: "kept-up", Op: ">=", Target: 0.99, Format: "%.3f"},
		{Section: "s", Figure: "failed", Bench: "BenchmarkSchedulerTCP", Metric: "failed", Op: "==", Target: 0, Format: "%.0f"},
		{Section: "s", Figure: "plan", Bench: "BenchmarkPlanAndDiff", Metric: "ms/plan+diff", Op: "<", Target: 50, Unit: " ms", Format: "%.1f"},
		{Section: "s", Figure: "absent", Bench: "BenchmarkNothing", Metric: "x", Op: "<", Target: 1, Format: "%.1f"},
	}
	var b strings.Builder
	Write(&b, specs, res, Info{Commit: "abc123", Date: time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)})
	md := b.String()
	for _, want := range []string{
		"| tcp/core | >= 10,000 | 12000 | met |",
		"| kept up | >= 0.99 | 1.002 | met |",
		"| failed | == 0 | 3 | MISSED |",
		"| plan | < 50 ms | 61.0 ms | MISSED |",
		"| absent | < 1 | not measured | not run |",
		"commit `abc123`",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("report lacks %q:\n%s", want, md)
		}
	}
	if missed := Missed(specs, res); len(missed) != 3 {
		t.Errorf("missed = %q, want the failed probes, the plan and the absent figure", missed)
	}
	if strings.Contains(md, "moved") {
		t.Errorf("the report says the tree moved when it did not:\n%s", md)
	}
	b.Reset()
	Write(&b, specs, res, Info{Commit: "abc123", CommitEnd: "def456", Date: time.Now()})
	if !strings.Contains(b.String(), "moved from `abc123` to `def456`") {
		t.Errorf("a run during which the tree moved does not say so:\n%s", b.String())
	}
}

// TestSpecsAreWellFormed checks that every spec says what it measures and
// how, with a known comparison (TestSpecsNameRealBenchmarks checks the
// benchmarks it names exist).
func TestSpecsAreWellFormed(t *testing.T) {
	for _, s := range Specs {
		if s.Section == "" || s.Figure == "" || !strings.HasPrefix(s.Bench, "Benchmark") || s.Metric == "" || s.Format == "" {
			t.Errorf("incomplete spec %+v", s)
		}
		switch s.Op {
		case "", "<", "<=", ">=", "==":
		default:
			t.Errorf("%s: unknown op %q", s.Figure, s.Op)
		}
	}
}
