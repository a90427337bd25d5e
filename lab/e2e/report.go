// Package e2e is the end-to-end proof of the project: its tests (build tag
// vm, run by `make e2e` inside the VM of lab/vm) deploy containerlab.yml
// with lab/runner and drive real traffic through the VIP while real servers
// fail, directors are killed, frozen, drained and added back, the
// configuration is reloaded and the router restarts. Report collects what
// they measure and renders lab/RESULTS.md.
package e2e

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Report is everything one e2e run measured.
type Report struct {
	Date time.Time
	// Commit is the git commit the lab's programs were built from.
	Commit  string
	Kernel  string
	Machine string
	// Deploy is the time to deploy the lab; Converged the time from then
	// until the router had every director as a next hop and every director
	// had programmed every backend.
	Deploy, Converged time.Duration
	Spread            *Spread
	RealServer        *RealServerFail
	// RealServerNoFallback is the same failure with scheduler flags
	// [mh-port] only (measured, not asserted).
	RealServerNoFallback *RealServerFail
	Reload               *Reload
	Drain                *Drain
	Router               *RouterRestart
	// Operations are the daemon's routine operations (reload, restart,
	// upgrade, kill, overrides and rollback across them), in run order.
	Operations []Operation
	// Loss rows, by configuration ("ours", "baseline").
	Loss map[string][]LossPhase
	// Churn rows: real servers changed, then a director killed.
	Churn []ChurnRow
	// Drift rows: a director's kernel changed by hand and repaired.
	Drift []DriftRow
	// Flaps are BGP session drops the router saw in the quiet scenarios.
	Flaps  *int
	Checks []Check
}

// Check is one assertion and its outcome.
type Check struct {
	Scenario, What string
	OK             bool
	Detail         string
	// Measured marks a check that is reported but not asserted: it never
	// fails the run, and RESULTS.md says whether it held.
	Measured bool
}

// Spread is the traffic-spread scenario.
type Spread struct {
	Requests, Failed int
	// Conns[director][server] are new IPVS connections on the director to
	// the real server during the run.
	Conns    map[string]map[string]uint64
	ByServer map[string]int
}

// RealServerFail is the real-server failure scenario.
type RealServerFail struct {
	Server string
	// Budget is fall x interval + timeout of the check.
	Budget time.Duration
	// Quiesced is, per director, when the server's weight became 0.
	Quiesced map[string]time.Duration
	// FailedBefore are requests that failed before every director had
	// quiesced it; FailedAfter those sent after.
	Requests, FailedBefore, FailedAfter int
}

// Reload is the weight-change reload scenario.
type Reload struct {
	Server                  string
	From, To                int
	Applied                 time.Duration
	Requests, Failed        int
	ShareBefore, ShareAfter float64 // of the changed server, in a sample
}

// Drain is the director drain scenario.
type Drain struct {
	Director                 string
	OutOfFIB, BackInFIB      time.Duration
	Requests, Failed         int
	NewConnsWhileDrained     uint64
	NewConnsBeforeDrainStart uint64
}

// RouterRestart is the router restart scenario.
type RouterRestart struct {
	Back             time.Duration
	Requests, Failed int
}

// Operation is one routine operation on directord.
type Operation struct {
	Event, Director string
	// Requests and Failed count the request stream; Opened and Broken the
	// long-lived connections (NoTraffic: the operation ran without).
	Requests, Failed, Opened, Broken int
	NoTraffic                        bool
	// RouteChanges counts the router's changes of the VIP's route (ip
	// monitor route) from the operation's start until it settled.
	RouteChanges int
	// Back is how long the director took to serve again: its daemon
	// answers with every verdict and every BGP session established, and
	// the router routes the VIP to every director.
	Back time.Duration
	Note string
	// Touched lists the directors the operation acted on; MachineDrops
	// names the BGP sessions of the others that dropped by themselves
	// while it ran (BFD down, hold timer): when set, the figures are
	// reported rather than asserted (lab/e2e machineDrops).
	Touched      []string `json:"-"`
	MachineDrops []string
}

// LossPhase is one event of the director-loss scenarios.
type LossPhase struct {
	Event    string
	Director string
	// Open connections when the event happened, and how many of them the
	// victim director was forwarding (its IPVS active connections; for a
	// director that came back, those it forwards after it rejoined).
	Open, OnVictim int
	Broken         int
	// Converged is how long the router took to change its next hops.
	Converged time.Duration
}

// AllOK reports whether every check passed.
func (r *Report) AllOK() bool {
	for _, c := range r.Checks {
		if !c.OK && !c.Measured {
			return false
		}
	}
	return len(r.Checks) > 0
}

func secs(d time.Duration) string {
	if d == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f s", d.Seconds())
}

// Markdown renders the report as lab/RESULTS.md.
func (r *Report) Markdown(w io.Writer) {
	status := "PASS"
	if !r.AllOK() {
		status = "FAIL"
	}
	p := func(format string, a ...any) { fmt.Fprintf(w, format, a...) }
	p("# End-to-end results\n\n")
	p("Rewritten by `make e2e` (lab/e2e) on %s from commit `%s`: **%s**, %d checks. Do not edit: regenerate it.\n\n",
		r.Date.UTC().Format("2006-01-02 15:04 MST"), r.Commit, status, len(r.Checks))
	p("The lab is `containerlab.yml` run by `lab/runner` in network namespaces inside a VM with kernel %s (%s). ", r.Kernel, r.Machine)
	p("Software emulation makes every process 10 to 30 times slower than on hardware, so times here are upper bounds. ")
	p("Lab deployed in %s; every director in the router's ECMP route and every backend programmed %s later.\n\n", secs(r.Deploy), secs(r.Converged))

	if len(r.Loss) > 0 {
		p("## Director loss: long-lived TCP connections broken\n\n")
		p("Echo connections through the VIP, each pinged every second; a connection counts as broken on a reset, an error or an echo later than 5 s. ")
		p("*ours*: the lab's configuration (scheduler `mh` with `mh-port` and `mh-fallback`, the ipvs package's sysctls: `sloppy_tcp=1`, `expire_nodest_conn=0`, `conn_reuse_mode=3`, ...). ")
		p("*baseline*: the same lab with `wlc` and the kernel's default IPVS sysctls (`ipvs.manage_sysctls: false`, lab/topology/baseline/).\n\n")
		p("| event | ours: broken / open (on the victim) | baseline: broken / open (on the victim) | router converged, ours / baseline |\n|---|---|---|---|\n")
		ours, base := r.Loss["ours"], r.Loss["baseline"]
		for i := range max(len(ours), len(base)) {
			var o, b *LossPhase
			if i < len(ours) {
				o = &ours[i]
			}
			if i < len(base) {
				b = &base[i]
			}
			ev := ""
			if o != nil {
				ev = o.Event
			} else if b != nil {
				ev = b.Event
			}
			cell := func(l *LossPhase) string {
				if l == nil {
					return "not run"
				}
				return fmt.Sprintf("**%d** / %d (%d)", l.Broken, l.Open, l.OnVictim)
			}
			conv := func(l *LossPhase) string {
				if l == nil {
					return "-"
				}
				return secs(l.Converged)
			}
			p("| %s | %s | %s | %s / %s |\n", ev, cell(o), cell(b), conv(o), conv(b))
		}
		p("\n")
	}

	r.churnMarkdown(w)
	r.driftMarkdown(w)

	p("## Requests and convergence\n\n")
	p("HTTP requests through the VIP, each on a new connection, at a steady rate during the scenario.\n\n")
	p("| scenario | requests | failed | times |\n|---|---|---|---|\n")
	if s := r.Spread; s != nil {
		p("| traffic spread | %d | %d | - |\n", s.Requests, s.Failed)
	}
	for _, rs := range []struct {
		s    *RealServerFail
		flag string
	}{{r.RealServer, "scheduler flags [mh-port, mh-fallback], the lab's"}, {r.RealServerNoFallback, "flags [mh-port] only: measured, not asserted"}} {
		s := rs.s
		if s == nil {
			continue
		}
		var qs []string
		for _, d := range sortedKeys(s.Quiesced) {
			qs = append(qs, fmt.Sprintf("%s %s", d, secs(s.Quiesced[d])))
		}
		p("| real server %s killed (%s) | %d | %d before every director quiesced it, **%d** after | weight 0 on %s (check budget fall x interval + timeout = %s) |\n",
			s.Server, rs.flag, s.Requests, s.FailedBefore, s.FailedAfter, strings.Join(qs, ", "), secs(s.Budget))
	}
	if s := r.Reload; s != nil {
		p("| reload: %s weight %d to %d on every director | %d | **%d** | applied on all in %s; %s's share %.0f%% before, %.0f%% after |\n",
			s.Server, s.From, s.To, s.Requests, s.Failed, secs(s.Applied), s.Server, 100*s.ShareBefore, 100*s.ShareAfter)
	}
	if s := r.Drain; s != nil {
		p("| director %s drained (directorctl director drain), then undrained | %d | **%d** | out of the router's route in %s (new connections on it while drained: %d); back in %s after undrain |\n",
			s.Director, s.Requests, s.Failed, secs(s.OutOfFIB), s.NewConnsWhileDrained, secs(s.BackInFIB))
	}
	if s := r.Router; s != nil {
		p("| router restarted (FRR daemons stopped and started) | %d | %d (reported, not asserted: the route is gone while FRR is down) | ECMP route with every director back in %s, no operator action |\n",
			s.Requests, s.Failed, secs(s.Back))
	}
	p("\n")
	r.operationsMarkdown(p)

	if s := r.Spread; s != nil && len(s.Conns) > 0 {
		p("## Spread\n\nNew IPVS connections per director and real server during %d requests (ipvsadm --stats on each director); the client saw ", s.Requests)
		var parts []string
		for _, k := range sortedKeys(s.ByServer) {
			parts = append(parts, fmt.Sprintf("%s %d", k, s.ByServer[k]))
		}
		p("%s.\n\n", strings.Join(parts, ", "))
		servers := map[string]bool{}
		for _, m := range s.Conns {
			for k := range m {
				servers[k] = true
			}
		}
		cols := sortedKeys(servers)
		p("| director | %s | total |\n|---|%s---|\n", strings.Join(cols, " | "), strings.Repeat("---|", len(cols)))
		for _, d := range sortedKeys(s.Conns) {
			var tot uint64
			var cells []string
			for _, c := range cols {
				cells = append(cells, fmt.Sprint(s.Conns[d][c]))
				tot += s.Conns[d][c]
			}
			p("| %s | %s | %d |\n", d, strings.Join(cells, " | "), tot)
		}
		p("\n")
	}
	if r.Flaps != nil {
		p("BGP sessions dropped on the router while nothing failed (spread, real-server and reload scenarios): %d.\n\n", *r.Flaps)
	}

	p("## Checks\n\n")
	for _, c := range r.Checks {
		mark := "x"
		if !c.OK {
			mark = " "
		}
		if c.Measured {
			held := "held"
			if !c.OK {
				held = "did not hold"
			}
			p("- %s: %s: measured, not asserted: %s", c.Scenario, c.What, held)
			if c.Detail != "" {
				p(" (%s)", c.Detail)
			}
			p("\n")
			continue
		}
		p("- [%s] %s: %s", mark, c.Scenario, c.What)
		if c.Detail != "" {
			p(" (%s)", c.Detail)
		}
		p("\n")
	}
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// operationsMarkdown renders the operations table.
func (r *Report) operationsMarkdown(p func(string, ...any)) {
	if len(r.Operations) == 0 {
		return
	}
	p("## Operations\n\n")
	p("directord's own lifecycle on one director (or all three), under the director-loss scenarios' traffic (the long-lived echo connections and a steady request stream), unless marked -. ")
	p("*route changes*: changes of the router's route to the VIP (`ip monitor route`) from the operation's start until it settled. ")
	p("*serving again*: until the daemon answers with every verdict and every BGP session up, and the router routes the VIP to every director.\n\n")
	p("| operation | director | requests failed / sent | connections broken / open | route changes | serving again |\n|---|---|---|---|---|---|\n")
	for _, o := range r.Operations {
		req, conns := fmt.Sprintf("**%d** / %d", o.Failed, o.Requests), fmt.Sprintf("**%d** / %d", o.Broken, o.Opened)
		if o.NoTraffic {
			req, conns = "-", "-"
		}
		changes := fmt.Sprintf("**%d**", o.RouteChanges)
		if o.Note != "" {
			changes = o.Note
		}
		if len(o.MachineDrops) > 0 {
			changes += " (sessions the machine dropped: " + strings.Join(o.MachineDrops, "; ") + ")"
		}
		p("| %s | %s | %s | %s | %s | %s |\n", o.Event, o.Director, req, conns, changes, secs(o.Back))
	}
	p("\n")
}
