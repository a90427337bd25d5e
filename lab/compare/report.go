package compare

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// Summary is the spread of one figure over the repetitions.
type Summary struct {
	Min, Median, Max float64
	// N is how many repetitions measured it.
	N int
	// Censored is how many of the N are lower bounds: phases that did not
	// finish, counted at the wait they outlasted (Figure.Bound).
	Censored int
}

// Summarize returns the min, median and max of the values that are >= 0
// (negative means not measured).
func Summarize(vals []float64) Summary {
	var v []float64
	for _, x := range vals {
		if x >= 0 && !math.IsNaN(x) {
			v = append(v, x)
		}
	}
	if len(v) == 0 {
		return Summary{Min: -1, Median: -1, Max: -1}
	}
	slices.Sort(v)
	med := v[len(v)/2]
	if len(v)%2 == 0 {
		med = (v[len(v)/2-1] + v[len(v)/2]) / 2
	}
	return Summary{Min: v[0], Median: med, Max: v[len(v)-1], N: len(v)}
}

// Figure is one compared quantity: how to take it from a run, its unit, and
// the goal for directord's median over keepalived's.
type Figure struct {
	Name string
	Unit string
	// Value extracts the figure from a run (negative: not measured).
	Value func(Run) float64
	// Goal is the largest acceptable ratio directord/keepalived; 0 means
	// the figure is reported without a goal.
	Goal float64
	// Format renders one value.
	Format string
	// Bound, for a timing, is the wait a run outlasted when the phase
	// did not finish (0: it finished, or never ran). Such a run counts at
	// that wait, as a lower bound: a daemon that never got the weights
	// right within it is slower than any that did.
	Bound func(Run) float64
	// PerProbe marks a cost divided by the probes completed: it compares
	// the daemons only when they were asked for like probe rates. With
	// shared targets directord probes each distinct target once and
	// keepalived every service's copy, and directord's fixed cost (resync
	// passes, the counter reader) divided by a handful of probes says
	// nothing about what a probe costs.
	PerProbe bool
}

// comparableRates is the largest factor between the daemons' demanded
// probe rates at which a PerProbe figure still compares them.
const comparableRates = 2

// Figures are the compared quantities, in report order. Every goal is
// directord at or below keepalived, and at most half on CPU per probe and on
// what a reload disturbs.
var Figures = []Figure{
	{Name: "kept up: probes achieved / demanded", Unit: "", Value: Run.KeptUp, Format: "%.2f"},
	{Name: "probes per second achieved (at the listeners)", Unit: "/s", Value: func(r Run) float64 { return r.ProbeRate }, Format: "%.0f"},
	{Name: "daemon CPU per completed probe", Unit: " ms", Value: Run.CPUPerProbe, Goal: 0.5, Format: "%.3f", PerProbe: true},
	{Name: "daemon CPU, % of one core", Unit: " %", Value: Run.CPUPercent, Goal: 1, Format: "%.1f"},
	{Name: "RSS (all the daemon's processes)", Unit: " MiB", Value: func(r Run) float64 { return mib(r.RSS) }, Goal: 1, Format: "%.1f"},
	{Name: "RSS: anonymous part (without the binary's and libraries' file pages)", Unit: " MiB", Value: func(r Run) float64 { return mib(r.RSSAnon) }, Format: "%.1f"},
	{Name: "start-up: every service and real server in IPVS", Unit: " s", Value: func(r Run) float64 { return r.StartInIPVS }, Goal: 1, Format: "%.2f"},
	{Name: "start-up: health settled (every weight right)", Unit: " s", Value: func(r Run) float64 { return r.StartSettled }, Goal: 1, Format: "%.2f"},
	{Name: "start-up: IPVS writes", Unit: "", Value: func(r Run) float64 { return float64(r.StartWrites.Commands) }, Goal: 1, Format: "%.0f"},
	{Name: "steady state: IPVS writes in the window", Unit: "", Value: func(r Run) float64 { return float64(r.SteadyWrites.Commands) }, Goal: 1, Format: "%.0f"},
	{Name: "detection: server stops answering to weight 0 everywhere", Unit: " s", Value: func(r Run) float64 { return r.Detect }, Goal: 1, Format: "%.2f",
		Bound: func(r Run) float64 { return r.DetectTimedOut }},
	{Name: "detection: other IPVS writes", Unit: "", Value: func(r Run) float64 { return nonNeg(r.Detect, float64(r.DetectOther)) }, Goal: 1, Format: "%.0f"},
	{Name: "detection: healthy (service, real server) pairs wrong at once, most", Unit: "", Value: detectWrong, Goal: 1, Format: "%.0f"},
	{Name: "recovery: server answers to its weight back everywhere", Unit: " s", Value: func(r Run) float64 { return r.Recover }, Goal: 1, Format: "%.2f"},
	{Name: "reload of one weight in all N services: to applied", Unit: " s", Value: func(r Run) float64 { return r.Reload }, Goal: 1, Format: "%.2f"},
	{Name: "reload: other IPVS writes it caused", Unit: "", Value: func(r Run) float64 { return nonNeg(r.Reload, float64(r.ReloadOther)) }, Goal: 0.5, Format: "%.0f"},
	{Name: "stop: SIGTERM to exit", Unit: " s", Value: func(r Run) float64 { return r.Stop }, Goal: 1, Format: "%.2f"},
}

// detectWrong is the most (service, real server) pairs other than the
// failed server's seen off their weight at once during detection, also when
// detection did not finish (a daemon flapping healthy servers under its own
// overload may never get every weight right).
func detectWrong(r Run) float64 {
	if r.Detect < 0 && r.DetectTimedOut <= 0 {
		return -1
	}
	return float64(r.DetectWrong)
}

// nonNeg returns v when the phase it belongs to was measured (at >= 0).
func nonNeg(at, v float64) float64 {
	if at < 0 {
		return -1
	}
	return v
}

func mib(b int64) float64 {
	if b <= 0 {
		return -1
	}
	return float64(b) / (1 << 20)
}

// Compared is one figure of one scenario for both daemons.
type Compared struct {
	Figure     Figure
	Keepalived Summary
	Directord  Summary
	// Demanded is each daemon's demanded probe rate per second
	// (keepalived's, directord's), zero when unknown.
	Demanded [2]float64
}

// comparable says whether the figure compares the daemons: always, except
// a PerProbe figure when one daemon was asked for more than
// comparableRates times the other's probes.
func (c Compared) comparable() bool {
	k, d := c.Demanded[0], c.Demanded[1]
	if !c.Figure.PerProbe || k <= 0 || d <= 0 {
		return true
	}
	return max(k, d) <= comparableRates*min(k, d)
}

// ratioText renders Ratio, as a bound when a daemon's median is one: "<"
// when keepalived did not finish (its true median is larger), ">" when
// directord did not.
func (c Compared) ratioText() string {
	s := ratio(c.Ratio())
	if s == "-" {
		return s
	}
	switch k, d := c.Keepalived.Censored > 0, c.Directord.Censored > 0; {
	case k && d:
		return "-"
	case k:
		return "< " + s
	case d:
		return "> " + s
	}
	return s
}

// Ratio is directord's median over keepalived's (NaN when undefined).
func (c Compared) Ratio() float64 {
	k, d := c.Keepalived.Median, c.Directord.Median
	if k < 0 || d < 0 {
		return math.NaN()
	}
	if k == 0 {
		if d == 0 {
			return 1
		}
		return math.Inf(1)
	}
	return d / k
}

// Verdict says whether directord met the goal: "met", "MISSED", "-" without
// a goal or data, "not comparable" for a per-probe figure at unlike
// demanded rates.
func (c Compared) Verdict() string {
	r := c.Ratio()
	switch {
	case !c.comparable():
		return fmt.Sprintf("not comparable (demanded %.0f/s vs %.0f/s)", c.Demanded[1], c.Demanded[0])
	case c.Figure.Goal == 0 || math.IsNaN(r):
		return "-"
	case c.Directord.Censored > 0:
		return "MISSED (directord did not finish)"
	case c.Keepalived.Censored > 0 && r <= c.Figure.Goal:
		return "met (keepalived did not finish)"
	case c.Keepalived.Censored > 0:
		return "- (keepalived did not finish)"
	case c.Keepalived.Median == 0 && c.Directord.Median == 0:
		return "met (both 0)"
	case r <= c.Figure.Goal:
		return "met"
	}
	return "MISSED"
}

// Compare summarises every figure of scenario name over res's runs.
func Compare(res Results, name string) []Compared {
	var demanded [2]float64
	for _, s := range res.Scenarios {
		if s.Name() == name {
			demanded = [2]float64{s.Demanded(Keepalived), s.Demanded(Directord)}
		}
	}
	var out []Compared
	for _, f := range Figures {
		var vals [2][]float64
		var censored [2]int
		for _, r := range res.Runs {
			if r.Scenario != name {
				continue
			}
			i := 0
			if r.Daemon == Directord {
				i = 1
			}
			v := f.Value(r)
			if b := bound(f, r); v < 0 && b > 0 {
				v = b
				censored[i]++
			}
			vals[i] = append(vals[i], v)
		}
		k, d := Summarize(vals[0]), Summarize(vals[1])
		k.Censored, d.Censored = censored[0], censored[1]
		out = append(out, Compared{Figure: f, Keepalived: k, Directord: d, Demanded: demanded})
	}
	return out
}

// bound is f's Bound for run r, 0 without one.
func bound(f Figure, r Run) float64 {
	if f.Bound == nil {
		return 0
	}
	return f.Bound(r)
}

// WriteMarkdown writes the comparison tables for every scenario.
func WriteMarkdown(w io.Writer, res Results) {
	for _, s := range res.Scenarios {
		fmt.Fprintf(w, "### %s: %d services x %d real servers, %d distinct targets\n\n", s.Name(), s.Services, s.RealServers, s.Targets())
		reps := 0
		for _, r := range res.Runs {
			if r.Scenario == s.Name() && r.Daemon == Directord {
				reps++
			}
		}
		fmt.Fprintf(w, "Demanded probe rate: keepalived %.0f/s, directord %.0f/s. Median (min-max) over %d of %d repetitions.\n\n",
			s.Demanded(Keepalived), s.Demanded(Directord), reps, res.Reps)
		fmt.Fprintln(w, "| figure | keepalived | directord | directord / keepalived | goal | verdict |")
		fmt.Fprintln(w, "|---|---|---|---|---|---|")
		for _, c := range Compare(res, s.Name()) {
			goal := "report"
			if c.Figure.Goal > 0 {
				goal = fmt.Sprintf("<= %gx", c.Figure.Goal)
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", c.Figure.Name, c.Keepalived.format(c.Figure),
				c.Directord.format(c.Figure), c.ratioText(), goal, c.Verdict())
		}
		fmt.Fprintln(w)
		writeErrors(w, res, s.Name())
	}
}

// format renders a summary as "median (min-max)unit".
func (s Summary) format(f Figure) string {
	if s.N == 0 {
		return "not measured"
	}
	if s.Censored == s.N {
		return fmt.Sprintf("did not finish in %s%s (%d of %d)", fmt.Sprintf(f.Format, s.Min), f.Unit, s.N, s.N)
	}
	m := fmt.Sprintf(f.Format, s.Median)
	if s.Censored > 0 {
		m = ">= " + m
	}
	if s.N == 1 || s.Min == s.Max {
		return m + f.Unit
	}
	return fmt.Sprintf("%s (%s-%s)%s", m, fmt.Sprintf(f.Format, s.Min), fmt.Sprintf(f.Format, s.Max), f.Unit)
}

func ratio(r float64) string {
	switch {
	case math.IsNaN(r):
		return "-"
	case math.IsInf(r, 1):
		return "inf"
	}
	return fmt.Sprintf("%.2fx", r)
}

// writeErrors lists the runs of a scenario that reported errors.
func writeErrors(w io.Writer, res Results, name string) {
	for _, r := range res.Runs {
		if r.Scenario == name && len(r.Errors) > 0 {
			fmt.Fprintf(w, "- %s rep %d failed: %s\n", r.Daemon, r.Rep+1, strings.ReplaceAll(strings.Join(r.Errors, "; "), "\n", " "))
		}
	}
}

// WriteReport writes the whole BENCH-compare.md: how it was measured, on
// what, and every scenario's table. by names the command that regenerates it.
func WriteReport(w io.Writer, res Results, by string) {
	fmt.Fprintf(w, "# directord against keepalived\n\n")
	fmt.Fprintf(w, "Rewritten by `%s` on %s, from commit `%s`. Do not edit: regenerate it.\n\n",
		by, res.Finished.UTC().Format("2006-01-02 15:04 UTC"), res.Commit)
	fmt.Fprintf(w, "- Host: %s, %d cores, kernel %s; load average %.1f before, %.1f after (the machine is shared: absolute times drift, ratios measured in one VM boot hold better).\n",
		res.Host.CPU, res.Host.Cores, res.Host.Kernel, res.Host.LoadBefore, res.Host.LoadAfter)
	tcg := "no"
	if res.TCG {
		tcg = "yes (qemu software emulation, about 10x slower than the host)"
	}
	fmt.Fprintf(w, "- VM: kernel %s, %d vCPUs, emulated (TCG): %s. %s. Both daemons ran in the same boot, one after the other, alternating which went first.\n",
		res.GuestKernel, res.GuestCPUs, tcg, res.Keepalived)
	if !res.Finished.IsZero() {
		fmt.Fprintf(w, "- Took %s.\n", res.Finished.Sub(res.Started).Round(time.Second))
	}
	if res.Partial != "" {
		fmt.Fprintf(w, "- **Partial comparison**: %s.\n", res.Partial)
	}
	fmt.Fprint(w, methodText)
	WriteMarkdown(w, res)
}

// Failed returns an error naming the runs that failed, or nil.
func Failed(res Results) error {
	var bad []string
	for _, r := range res.Runs {
		if len(r.Errors) > 0 {
			bad = append(bad, fmt.Sprintf("%s %s rep %d: %s", r.Scenario, r.Daemon, r.Rep+1, r.Errors[0]))
		}
	}
	if len(bad) == 0 {
		return nil
	}
	return fmt.Errorf("%d runs failed:\n  %s", len(bad), strings.Join(bad, "\n  "))
}

// methodText says what is measured and how the settings correspond.
const methodText = `
## How it is measured

- **Real servers**: 10 network namespaces on a bridge, each listening on every
  probed port; the listeners count the connections they accept, so the probe
  rate is counted where probes arrive, not taken from either daemon.
  *distinct*: service i is probed on its own port (N x 10 targets);
  *shared*: every service probes port 80 of the same 10 servers (directord
  probes each of the 10 once; keepalived probes each service's servers).
- **Checks**: TCP connect every 2 s, timeout 1 s. keepalived has no rise
  count (one good probe brings a server back), so directord runs rise 1;
  directord's fall 3 (three failed probes, 2 s apart) is keepalived's
  ` + "`retry 2`" + ` with ` + "`delay_before_retry 2`" + `. A failed server
  stays in IPVS at weight 0 in both (keepalived ` + "`inhibit_on_failure`" + `,
  directord's drain); scheduler mh with mh-port and mh-fallback in both.
- **CPU** is the daemon's processes' user+system time (keepalived: parent and
  checker) over a steady window with every server healthy; per completed
  probe it divides by the probes the listeners accepted in that window.
  Most of it is kernel time that neither daemon can avoid: the real servers
  sit behind veth links in the same guest, so a connect's SYN, and the
  server's whole side of the handshake, is processed in softirq inside the
  prober's own connect and close calls and counted as its system time
  (` + "`perf`" + ` in the guest, ` + "`-profile`" + `: about 40 % of either daemon's samples are
  under connect, most of it the receiving side). The per-probe split into
  user and system time is in the ` + "`-logs`" + ` folder's cpu files.
  **RSS** sums the daemon's processes; its anonymous part leaves out the
  pages of the binary and shared libraries (the page cache shares those and
  can drop them), which is what the daemon itself holds.
- **IPVS writes** are counted in the guest kernel with kprobes on the IPVS
  set commands (netlink and setsockopt), whichever way a daemon writes.
  "Other" writes are those beyond the N that the change itself needs.
- **Start-up**: process start to every service and real server in IPVS, and to
  every weight right (directord learns each backend's health before giving
  it weight; keepalived starts every server at its weight).
- **Detection**: real server 0's link goes down (probes time out) until its
  weight is 0 in every service and every other weight is still right;
  **recovery**: link up until its weight is back. A daemon that does not get
  there within the harness's wait (5 minutes) "did not finish": the run
  counts at that wait, a lower bound, so the ratio reads "< x" (or "> x"
  when directord did not finish), and the run's later phases are not
  measured. "Healthy pairs wrong at once" is the most (service, real
  server) pairs other than real server 0's seen off their weight at one
  time meanwhile: healthy servers marked down. The harness reads the IPVS
  table every 20 ms (50 us per service), or after twice as long as the last
  reading took, whichever is longer, so it takes at most a third of one
  CPU from the daemon it watches.
- **Reload**: real server 1's weight 1 -> 2 in all N services, the file
  rewritten and SIGHUP sent, until the kernel has it everywhere; writes are
  counted until 3 s after that.
- **Stop**: SIGTERM to exit. Neither removes its IPVS services on stop
  (keepalived ` + "`--dont-release-ipvs`" + `); directord runs with
  graceful_shutdown and linger 0, as nothing is announced to a router here.

The goal: directord at or below keepalived on every figure (ratio <= 1), and
at most 0.5x on CPU per probe and on the writes a reload causes. CPU per
probe compares the daemons only where they are asked for like probe rates
(within 2x): with shared targets directord probes each distinct target once
while keepalived probes every service's copy, so its fixed cost divided by a
handful of probes is "not comparable"; CPU, % of one core, is the figure there.

`
