package compare

import (
	"math"
	"strings"
	"testing"
	"time"
)

func TestSummarizeSkipsUnmeasured(t *testing.T) {
	got := Summarize([]float64{3, -1, 1, 2, 10})
	if got != (Summary{Min: 1, Median: 2.5, Max: 10, N: 4}) {
		t.Errorf("Summarize = %+v", got)
	}
	if got := Summarize([]float64{-1}); got.N != 0 || got.Median != -1 {
		t.Errorf("nothing measured: %+v", got)
	}
}

func TestVerdicts(t *testing.T) {
	cpu := Figures[2]
	if cpu.Goal != 0.5 {
		t.Fatalf("figure 2 is %q with goal %v, want CPU per probe at 0.5", cpu.Name, cpu.Goal)
	}
	for _, c := range []struct {
		k, d float64
		want string
	}{{4, 2, "met"}, {4, 2.1, "MISSED"}, {0, 0, "met (both 0)"}, {0, 1, "MISSED"}, {-1, 1, "-"}} {
		cmp := Compared{Figure: cpu, Keepalived: Summary{Median: c.k, N: 1}, Directord: Summary{Median: c.d, N: 1}}
		if got := cmp.Verdict(); got != c.want {
			t.Errorf("keepalived %v, directord %v: %q, want %q (ratio %v)", c.k, c.d, got, c.want, cmp.Ratio())
		}
	}
	if r := (Compared{Keepalived: Summary{Median: 0}, Directord: Summary{Median: 2}}).Ratio(); !math.IsInf(r, 1) {
		t.Errorf("ratio over 0 = %v", r)
	}
}

// TestPerProbeNeedsLikeRates: CPU per probe compares the daemons only when
// they were asked for like probe rates; with shared targets directord's
// idle cost over 5 probes/s against keepalived's 3,300 is no comparison.
func TestPerProbeNeedsLikeRates(t *testing.T) {
	for _, shared := range []bool{false, true} {
		s := Scenario{Services: 1000, RealServers: 10, Interval: 2 * time.Second, Timeout: time.Second, Fall: 3, Shared: shared}
		run := func(d Daemon, cpu float64) Run {
			return Run{Daemon: d, Scenario: s.Name(), SteadySeconds: 10, Probes: 50000, ProbeRate: 5000, Demanded: s.Demanded(d), CPUSeconds: cpu}
		}
		res := Results{Scenarios: []Scenario{s}, Reps: 1, Runs: []Run{run(Keepalived, 1), run(Directord, 4)}}
		var perProbe, cpu Compared
		for _, c := range Compare(res, s.Name()) {
			switch c.Figure.Name {
			case "daemon CPU per completed probe":
				perProbe = c
			case "daemon CPU, % of one core":
				cpu = c
			}
		}
		want := "MISSED"
		if shared {
			want = "not comparable (demanded 5/s vs 5000/s)"
		}
		if got := perProbe.Verdict(); got != want {
			t.Errorf("shared %v: CPU per probe verdict %q, want %q", shared, got, want)
		}
		if got := cpu.Verdict(); got != "MISSED" {
			t.Errorf("shared %v: CPU %% verdict %q, want MISSED (it compares at any rates)", shared, got)
		}
	}
}

func TestReportHasEveryFigure(t *testing.T) {
	s := Scenario{Services: 10, RealServers: 10, Interval: 2 * time.Second, Timeout: time.Second, Fall: 3}
	run := func(d Daemon, cpu float64) Run {
		return Run{Daemon: d, Scenario: s.Name(), SteadySeconds: 10, Probes: 500, ProbeRate: 50, Demanded: 50,
			CPUSeconds: cpu, RSS: 10 << 20, StartInIPVS: 1, StartSettled: 1, Detect: 7, Recover: 2, Reload: 1, Stop: 0.1}
	}
	res := Results{Scenarios: []Scenario{s}, Reps: 1, Runs: []Run{run(Keepalived, 2), run(Directord, 0.5)}}
	var b strings.Builder
	WriteReport(&b, res, "test")
	md := b.String()
	for _, f := range Figures {
		if !strings.Contains(md, "| "+f.Name+" |") {
			t.Errorf("report lacks %q", f.Name)
		}
	}
	if !strings.Contains(md, "| daemon CPU per completed probe | 4.000 ms | 1.000 ms | 0.25x | <= 0.5x | met |") {
		t.Errorf("CPU row wrong:\n%s", md)
	}
}

// TestDetectionThatNeverFinishesIsALowerBound: a daemon that never got
// the weights right within the harness's wait is slower than one that did.
// At 1,000 distinct services keepalived did not finish detection in 5
// minutes in every run, and the report said "not measured" with no ratio,
// as if nothing were known.
func TestDetectionThatNeverFinishesIsALowerBound(t *testing.T) {
	s := Scenario{Services: 1000, RealServers: 10, Interval: 2 * time.Second, Timeout: time.Second, Fall: 3}
	run := func(d Daemon, detect, timedOut float64, wrong int) Run {
		return Run{Daemon: d, Scenario: s.Name(), Detect: detect, DetectTimedOut: timedOut, DetectWrong: wrong,
			Recover: -1, Reload: -1, Stop: -1, StartInIPVS: -1, StartSettled: -1}
	}
	res := Results{Scenarios: []Scenario{s}, Reps: 3, Runs: []Run{
		run(Keepalived, -1, 300, 412), run(Keepalived, -1, 300, 380), run(Keepalived, -1, 300, 97),
		run(Directord, 44.5, 0, 0), run(Directord, 34, 0, 0), run(Directord, 60.5, 0, 0),
	}}
	var b strings.Builder
	WriteMarkdown(&b, res)
	out := b.String()
	for _, want := range []string{
		"| detection: server stops answering to weight 0 everywhere | did not finish in 300.00 s (3 of 3) | 44.50 (34.00-60.50) s | < 0.15x | <= 1x | met (keepalived did not finish) |",
		"| detection: healthy (service, real server) pairs wrong at once, most | 380 (97-412) | 0 | 0.00x | <= 1x | met |",
		"| recovery: server answers to its weight back everywhere | not measured |",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report lacks %q:\n%s", want, out)
		}
	}

	// One keepalived run finished: the median is still a lower bound.
	res.Runs[1].Detect, res.Runs[1].DetectTimedOut = 120, 0
	b.Reset()
	WriteMarkdown(&b, res)
	if want := "| >= 300.00 (120.00-300.00) s | 44.50 (34.00-60.50) s | < 0.15x |"; !strings.Contains(b.String(), want) {
		t.Errorf("report lacks %q:\n%s", want, b.String())
	}

	// directord not finishing is a miss, whatever keepalived did.
	res.Runs[3].Detect, res.Runs[3].DetectTimedOut = -1, 300
	c := Compare(res, s.Name())[10]
	if c.Figure.Bound == nil || c.Verdict() != "MISSED (directord did not finish)" {
		t.Errorf("%s: verdict %q, want MISSED (directord did not finish)", c.Figure.Name, c.Verdict())
	}
}
