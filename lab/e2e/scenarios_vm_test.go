//go:build linux && vm

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/observe"
	"github.com/anycast-director/director/lab/traffic"
)

const (
	// statsLag covers the IPVS estimator, which folds the per-CPU counters
	// that ipvsadm --stats shows into their totals every 2 s.
	statsLag = 2500 * time.Millisecond
	// holdConns long-lived connections are open in the director-loss
	// scenarios; a ping every second, an echo later than echoTimeout breaks
	// the connection.
	holdConns   = 200
	echoTimeout = 5 * time.Second
	// settle is how long a scenario keeps its connections after an event:
	// long enough for every connection to ping and, if its packets went
	// nowhere, to time out.
	settle = echoTimeout + 2*time.Second
	// loadRate is the steady request rate of the request scenarios.
	loadRate = 20
)

func addrs(nodes ...string) []string {
	var out []string
	for _, n := range nodes {
		out = append(out, directorAddr[n])
	}
	return out
}

func except(all []string, victim string) []string {
	var out []string
	for _, n := range all {
		if n != victim {
			out = append(out, n)
		}
	}
	return out
}

// startLoad starts steady HTTP requests from the client.
func (e *env) startLoad(t *testing.T, name string, rate float64) *observe.Client {
	t.Helper()
	c, err := observe.StartLoad(e.lab, client, "labclient", webURL, rate)
	if err != nil {
		e.fatal(t, name, err)
	}
	return c
}

func (e *env) stopLoad(t *testing.T, scenario string, c *observe.Client) traffic.HTTPResult {
	t.Helper()
	var res traffic.HTTPResult
	if err := c.Stop(&res); err != nil {
		e.fatal(t, scenario, err)
	}
	logFailures(t, scenario, res.Failures)
	return res
}

// logFailures logs failures grouped by error, with the first and last time.
func logFailures(t *testing.T, scenario string, fs []traffic.Event) {
	type group struct {
		n           int
		first, last time.Time
	}
	groups := map[string]*group{}
	var order []string
	for _, f := range fs {
		msg := f.Err
		if i := strings.LastIndex(msg, ": "); i >= 0 {
			msg = msg[i+2:]
		}
		g := groups[msg]
		if g == nil {
			g = &group{first: f.Started}
			groups[msg] = g
			order = append(order, msg)
		}
		g.n++
		g.last = f.Started
	}
	for _, m := range order {
		g := groups[m]
		t.Logf("%s: %d requests sent %s..%s failed: %s", scenario, g.n, g.first.Format("15:04:05.000"), g.last.Format("15:04:05.000"), m)
	}
}

// sample sends n requests at 50/s and returns who answered.
func (e *env) sample(t *testing.T, scenario string, n int) traffic.HTTPResult {
	t.Helper()
	c, err := observe.StartClient(e.lab, client, scenario+"-sample", "http", "-url", webURL, "-n", fmt.Sprint(n), "-rate", "50", "-timeout", "3s")
	if err != nil {
		e.fatal(t, scenario, err)
	}
	var res traffic.HTTPResult
	if err := c.Wait(2*time.Minute, &res); err != nil {
		e.fatal(t, scenario, err)
	}
	logFailures(t, scenario+" sample", res.Failures)
	return res
}

// webConns returns, per director, the IPVS connection counter of every web
// destination (by real server name).
func (e *env) webConns(t *testing.T, scenario string) map[string]map[string]uint64 {
	t.Helper()
	out := map[string]map[string]uint64{}
	for _, d := range directors {
		st, err := observe.IPVSStats(context.Background(), e.lab, d)
		if err != nil {
			e.fatal(t, scenario, err)
		}
		out[d] = map[string]uint64{}
		for _, s := range servers {
			if dst := st[vip+":80"].Dest(serverAddr[s] + ":80"); dst != nil {
				out[d][s] = dst.Conns
			}
		}
	}
	return out
}

func total(m map[string]uint64) uint64 {
	var n uint64
	for _, v := range m {
		n += v
	}
	return n
}

// echoConns is how many established echo connections a director's IPVS
// forwards (closed ones of earlier runs linger as inactive and are not
// counted).
func (e *env) echoConns(node string) int {
	tbl, err := observe.ReadIPVS(e.lab, node)
	if err != nil {
		return -1
	}
	n := 0
	for _, d := range tbl[echoVIP].Dests {
		n += d.ActiveConn
	}
	return n
}

// spread: requests reach every real server through every director.
func (e *env) spread(t *testing.T) {
	const sc = "traffic spread"
	before := e.webConns(t, sc)
	res := e.sample(t, sc, 300)
	time.Sleep(statsLag)
	after := e.webConns(t, sc)
	s := &Spread{Requests: res.Sent, Failed: res.Failed, ByServer: res.ByServer, Conns: map[string]map[string]uint64{}}
	for _, d := range directors {
		s.Conns[d] = map[string]uint64{}
		for _, srv := range servers {
			s.Conns[d][srv] = after[d][srv] - before[d][srv]
		}
	}
	e.report.Spread = s
	e.check(t, sc, "every request answered", res.Failed == 0 && res.OK == 300, "%d ok, %d failed of %d", res.OK, res.Failed, res.Sent)
	for _, srv := range servers {
		e.check(t, sc, "the client reached "+srv, res.ByServer[srv] > 0, "%d answers", res.ByServer[srv])
	}
	for _, d := range directors {
		var empty []string
		for _, srv := range servers {
			if s.Conns[d][srv] == 0 {
				empty = append(empty, srv)
			}
		}
		e.check(t, sc, d+" forwarded to every real server", len(empty) == 0, "%v; none to %v", s.Conns[d], empty)
	}
}

// healthBudget is fall x interval + timeout of the web check, from the
// directors' configuration.
func (e *env) healthBudget(t *testing.T) time.Duration {
	cfg, err := config.Load(filepath.Join(e.dir, "lab/topology/directors/d1.yaml"))
	if err != nil {
		e.fatal(t, "config", err)
	}
	svc, ok := cfg.ServiceByName("web")
	if !ok {
		e.fatal(t, "config", fmt.Errorf("d1.yaml has no service web"))
	}
	h := svc.Health
	return time.Duration(h.Fall)*h.Interval + h.Timeout
}

// realServerFails: a real server's service dies; every director stops
// sending it new connections within the check's fall time, and no request
// sent after that fails. With assert false it only measures (the run
// without mh-fallback).
func (e *env) realServerFails(t *testing.T, sc, victim string, assert bool) *RealServerFail {
	addr := serverAddr[victim] + ":80"
	budget := e.healthBudget(t)
	load := e.startLoad(t, "rsfail", loadRate)
	time.Sleep(2 * time.Second)
	procs := e.lab.Procs(victim)
	if len(procs) != 1 {
		e.fatal(t, sc, fmt.Errorf("%s runs %d processes, want its labserver", victim, len(procs)))
	}
	t0 := time.Now()
	procs[0].Kill()
	quiesced := map[string]time.Duration{}
	deadline := t0.Add(30 * time.Second)
	for len(quiesced) < len(directors) && time.Now().Before(deadline) {
		for _, d := range directors {
			if _, ok := quiesced[d]; ok {
				continue
			}
			tbl, err := observe.ReadIPVS(e.lab, d)
			if err != nil {
				continue
			}
			if dst := tbl[vip+":80"].Dest(addr); dst == nil || dst.Weight == 0 {
				quiesced[d] = time.Since(t0)
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	var last time.Duration
	for _, q := range quiesced {
		last = max(last, q)
	}
	tq := t0.Add(last)
	t.Logf("%s: killed at %s, quiesced on every director at %s", sc, t0.Format("15:04:05.000"), tq.Format("15:04:05.000"))
	time.Sleep(statsLag) // connections made before tq are counted by now
	atQuiesce := e.webConns(t, sc)
	time.Sleep(5 * time.Second)
	atEnd := e.webConns(t, sc)
	res := e.stopLoad(t, sc, load)
	after := res.FailedStartedAfter(tq)
	r := &RealServerFail{Server: victim, Budget: budget, Quiesced: quiesced,
		Requests: res.Sent, FailedBefore: res.Failed - after, FailedAfter: after}
	if assert {
		slack := 1500 * time.Millisecond // probe scheduling and the announcer's pass in an emulated VM
		for _, d := range directors {
			q, ok := quiesced[d]
			e.check(t, sc, fmt.Sprintf("%s set %s to weight 0 within fall x interval + timeout (+%s)", d, victim, slack),
				ok && q <= budget+slack, "after %s, budget %s", q.Round(time.Millisecond), budget)
			// A count of 0 at the end means the drained destination was
			// deleted, which also takes no new connections.
			e.check(t, sc, fmt.Sprintf("%s sent %s no new connection after that", d, victim),
				atEnd[d][victim] == atQuiesce[d][victim] || atEnd[d][victim] == 0, "%d then %d", atQuiesce[d][victim], atEnd[d][victim])
		}
		e.check(t, sc, "no request sent after every director quiesced it failed", after == 0 && res.OK > 0,
			"%d failed after, %d before, %d ok", after, res.Failed-after, res.OK)
	}
	if err := e.lab.RestartRole(context.Background(), victim, 2*time.Second); err != nil {
		e.fatal(t, sc, err)
	}
	if err := e.steady(context.Background(), time.Minute); err != nil {
		e.fatal(t, sc+" (restore)", err)
	}
	return r
}

// realServerFailsWithoutFallback repeats the real-server failure with the
// scheduler flags [mh-port] only: IPVS's mh keeps a quiesced (weight 0)
// destination in its table and, without mh-fallback, finds no destination
// for the flows that hash to it, so the director answers them with a reset
// until the destination is deleted. Measured, not asserted.
func (e *env) realServerFailsWithoutFallback(t *testing.T) {
	const sc = "real server fails without mh-fallback"
	e.editDirectors(t, sc, "scheduler_flags: [mh-port, mh-fallback]", "scheduler_flags: [mh-port]", 2)
	defer e.editDirectors(t, sc, "scheduler_flags: [mh-port]", "scheduler_flags: [mh-port, mh-fallback]", 2)
	e.report.RealServerNoFallback = e.realServerFails(t, sc, "rs1", false)
}

// editDirectors replaces old by repl in every director's file, in place
// (the file is bound into the node), and asks each director to reload.
func (e *env) editDirectors(t *testing.T, sc, old, repl string, count int) {
	t.Helper()
	for _, d := range directors {
		p := filepath.Join(e.dir, "lab/topology/directors", d+".yaml")
		data, err := os.ReadFile(p)
		if err != nil {
			e.fatal(t, sc, err)
		}
		if n := strings.Count(string(data), old); n != count {
			e.fatal(t, sc, fmt.Errorf("%s contains %q %d times, want %d", p, old, n, count))
		}
		// os.WriteFile truncates the same inode, which the bind shows.
		if err := os.WriteFile(p, []byte(strings.ReplaceAll(string(data), old, repl)), 0o644); err != nil {
			e.fatal(t, sc, err)
		}
	}
	for _, d := range directors {
		if out, err := e.lab.Exec(context.Background(), d, "directorctl", "reload"); err != nil {
			e.fatal(t, sc, fmt.Errorf("%v %s", err, out))
		}
	}
}

// setWeight changes one backend's weight on every director.
func (e *env) setWeight(t *testing.T, sc, addr string, from, to int) {
	t.Helper()
	e.editDirectors(t, sc, fmt.Sprintf("{ address: %s, weight: %d }", addr, from), fmt.Sprintf("{ address: %s, weight: %d }", addr, to), 1)
}

// weightsApplied waits until every director's IPVS has weight w for addr
// on both services.
func (e *env) weightsApplied(addr string, w int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		ok := true
		for _, d := range directors {
			tbl, err := observe.ReadIPVS(e.lab, d)
			if err != nil {
				return 0, err
			}
			for _, port := range []string{"80", "7000"} {
				if dst := tbl[vip+":"+port].Dest(addr + ":" + port); dst == nil || dst.Weight != w {
					ok = false
				}
			}
		}
		if ok {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("weight of %s is not %d on every director after %s", addr, w, timeout)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func share(res traffic.HTTPResult, server string) float64 {
	if res.OK == 0 {
		return 0
	}
	return float64(res.ByServer[server]) / float64(res.OK)
}

// reloadWeight: a reload that doubles one backend's weight fails no request
// and shifts the spread.
func (e *env) reloadWeight(t *testing.T) {
	const sc, victim = "reload", "rs2"
	addr := serverAddr[victim]
	before := e.sample(t, sc, 150)
	load := e.startLoad(t, "reload", loadRate)
	time.Sleep(time.Second)
	t0 := time.Now()
	e.setWeight(t, sc, addr, 1, 2)
	if _, err := e.weightsApplied(addr, 2, 30*time.Second); err != nil {
		e.stopLoad(t, sc, load)
		e.fatal(t, sc, err)
	}
	applied := time.Since(t0) // edit, three directorctl reloads, IPVS updated
	time.Sleep(3 * time.Second)
	res := e.stopLoad(t, sc, load)
	after := e.sample(t, sc, 200)
	if after.Failed > 0 {
		for _, d := range directors {
			out, _ := e.lab.Exec(context.Background(), d, "ipvsadm", "-Ln", "--stats")
			t.Logf("%s IPVS after the reload:\n%s", d, out)
		}
	}
	e.check(t, sc, "no request failed after the reload", after.Failed == 0, "%d of %d failed", after.Failed, after.Sent)
	e.report.Reload = &Reload{Server: victim, From: 1, To: 2, Applied: applied, Requests: res.Sent, Failed: res.Failed,
		ShareBefore: share(before, victim), ShareAfter: share(after, victim)}
	e.check(t, sc, "no request failed during the reload", res.Failed == 0 && res.OK > 0, "%d failed, %d ok", res.Failed, res.OK)
	most := true
	for _, s := range servers {
		if s != victim && after.ByServer[s] >= after.ByServer[victim] {
			most = false
		}
	}
	e.check(t, sc, victim+" gets the largest share after its weight doubled", most, "after: %v", after.ByServer)

	e.setWeight(t, sc, addr, 2, 1)
	if _, err := e.weightsApplied(addr, 1, 30*time.Second); err != nil {
		e.fatal(t, sc+" (restore)", err)
	}
}

// drain: directorctl director drain under steady requests: the director
// leaves the router's route, gets no new connections, and no request fails;
// undrain brings it back.
func (e *env) drain(t *testing.T) {
	const sc, victim = "drain", "d2"
	ctx := context.Background()
	load := e.startLoad(t, "drain", loadRate)
	time.Sleep(2 * time.Second)
	if out, err := e.lab.Exec(ctx, victim, "directorctl", "director", "drain"); err != nil {
		e.stopLoad(t, sc, load)
		e.fatal(t, sc, fmt.Errorf("%v %s", err, out))
	}
	out, err := observe.WaitNextHops(ctx, e.lab, router, vip, addrs(except(directors, victim)...), 30*time.Second)
	if err != nil {
		e.stopLoad(t, sc, load)
		e.fatal(t, sc, err)
	}
	time.Sleep(statsLag) // requests already on their way, and their counters
	c1 := total(e.webConns(t, sc)[victim])
	time.Sleep(4 * time.Second) // graceful shutdown, withdraw and linger pass
	c2 := total(e.webConns(t, sc)[victim])
	if out, err := e.lab.Exec(ctx, victim, "directorctl", "director", "undrain"); err != nil {
		e.stopLoad(t, sc, load)
		e.fatal(t, sc, fmt.Errorf("%v %s", err, out))
	}
	back, err := observe.WaitNextHops(ctx, e.lab, router, vip, addrs(directors...), time.Minute)
	if err != nil {
		e.stopLoad(t, sc, load)
		e.fatal(t, sc, err)
	}
	time.Sleep(3*time.Second + statsLag)
	c3 := total(e.webConns(t, sc)[victim])
	res := e.stopLoad(t, sc, load)
	e.report.Drain = &Drain{Director: victim, OutOfFIB: out, BackInFIB: back, Requests: res.Sent, Failed: res.Failed,
		NewConnsWhileDrained: c2 - c1}
	e.check(t, sc, "no request failed through drain and undrain", res.Failed == 0 && res.OK > 0, "%d failed, %d ok", res.Failed, res.OK)
	e.check(t, sc, victim+" got no new connection while drained", c2 == c1, "%d new", c2-c1)
	e.check(t, sc, victim+" serves again after undrain", c3 > c2, "%d new connections after undrain", c3-c2)
}

// startHold opens the long-lived connections and checks that all opened.
func (e *env) startHold(t *testing.T, sc string) (*observe.Client, int) {
	t.Helper()
	c, err := observe.StartHold(e.lab, client, "labclient", echoVIP, holdConns, echoTimeout)
	if err != nil {
		e.fatal(t, sc, err)
	}
	opened, failed, err := c.WaitReady(2 * time.Minute)
	if err != nil {
		e.fatal(t, sc, err)
	}
	if opened != holdConns {
		c.Stop(&traffic.HoldResult{})
		e.fatal(t, sc, fmt.Errorf("%d of %d connections opened (%d failed)", opened, holdConns, failed))
	}
	time.Sleep(2 * time.Second) // every connection pings at least once
	return c, opened
}

// killAndAddBack: a director dies with 200 connections open, then comes
// back as a fresh container; count the connections that break each time.
func (e *env) killAndAddBack(t *testing.T, label string) {
	sc := "director killed and added back (" + label + ")"
	const victim = "d3"
	ctx := context.Background()
	hold, opened := e.startHold(t, sc)
	onVictim := e.echoConns(victim)
	t0 := time.Now()
	if err := e.lab.StopNode(victim); err != nil {
		e.fatal(t, sc, err)
	}
	conv0, err := observe.WaitNextHops(ctx, e.lab, router, vip, addrs(except(directors, victim)...), 30*time.Second)
	if err != nil {
		e.fatal(t, sc, err)
	}
	time.Sleep(settle)
	t1 := time.Now()
	if err := e.lab.StartNode(ctx, victim); err != nil {
		e.fatal(t, sc, err)
	}
	conv1, err := observe.WaitNextHops(ctx, e.lab, router, vip, addrs(directors...), 2*time.Minute)
	if err != nil {
		e.fatal(t, sc, err)
	}
	conv1 = time.Since(t1) // from the start of the container: boot, learn, hold-down, announce
	time.Sleep(settle)
	backOn := e.echoConns(victim)
	var res traffic.HoldResult
	if err := hold.Stop(&res); err != nil {
		e.fatal(t, sc, err)
	}
	killed, added := res.BrokenBetween(t0, t1), res.BrokenBetween(t1, res.End.Add(time.Second))
	before := res.BrokenBetween(res.Start, t0)
	e.report.Loss[label] = append(e.report.Loss[label],
		LossPhase{Event: "director killed (" + victim + ": processes and namespace gone)", Director: victim, Open: opened - before, OnVictim: onVictim, Broken: killed, Converged: conv0},
		LossPhase{Event: "director added back (" + victim + ": fresh namespace, empty IPVS)", Director: victim, Open: opened - before - killed, OnVictim: backOn, Broken: added, Converged: conv1})
	t.Logf("%s: %d opened, %d on %s; broken: %d before, %d killed, %d added back; %v", sc, opened, onVictim, victim, before, killed, added, res.ByServer)
	e.check(t, sc, victim+" carried connections when it died", onVictim >= holdConns/10, "%d of %d", onVictim, holdConns)
	if label == "ours" {
		e.check(t, sc, "no connection broke before the kill", before == 0, "%d", before)
		e.check(t, sc, "no connection broke when "+victim+" was killed", killed == 0, "%d of %d broke", killed, opened)
		e.check(t, sc, "no connection broke when "+victim+" was added back", added == 0, "%d broke; %d moved back onto it", added, backOn)
		e.check(t, sc, "connections moved back onto "+victim, backOn > 0, "%d", backOn)
	}
}

// freeze: a director's processes are frozen (SIGSTOP, as docker pause):
// BFD takes it out of the route while its kernel keeps forwarding; then it
// is thawed.
func (e *env) freeze(t *testing.T, label string) {
	sc := "director frozen (" + label + ")"
	const victim = "d1"
	ctx := context.Background()
	hold, opened := e.startHold(t, sc)
	onVictim := e.echoConns(victim)
	t0 := time.Now()
	if err := e.lab.Pause(victim); err != nil {
		e.fatal(t, sc, err)
	}
	conv0, err := observe.WaitNextHops(ctx, e.lab, router, vip, addrs(except(directors, victim)...), 30*time.Second)
	if err != nil {
		e.lab.Unpause(victim)
		e.fatal(t, sc, err)
	}
	time.Sleep(settle)
	t1 := time.Now()
	if err := e.lab.Unpause(victim); err != nil {
		e.fatal(t, sc, err)
	}
	conv1, err := observe.WaitNextHops(ctx, e.lab, router, vip, addrs(directors...), 2*time.Minute)
	if err != nil {
		e.fatal(t, sc, err)
	}
	time.Sleep(settle)
	var res traffic.HoldResult
	if err := hold.Stop(&res); err != nil {
		e.fatal(t, sc, err)
	}
	frozen, thawed := res.BrokenBetween(t0, t1), res.BrokenBetween(t1, res.End.Add(time.Second))
	before := res.BrokenBetween(res.Start, t0)
	e.report.Loss[label] = append(e.report.Loss[label],
		LossPhase{Event: "director frozen (" + victim + ": SIGSTOP, BFD detects it)", Director: victim, Open: opened - before, OnVictim: onVictim, Broken: frozen, Converged: conv0},
		LossPhase{Event: "director thawed (" + victim + ": SIGCONT, sessions re-established)", Director: victim, Open: opened - before - frozen, OnVictim: e.echoConns(victim), Broken: thawed, Converged: conv1})
	t.Logf("%s: %d opened, %d on %s; broken: %d before, %d frozen, %d thawed", sc, opened, onVictim, victim, before, frozen, thawed)
	e.check(t, sc, victim+" carried connections when it froze", onVictim >= holdConns/10, "%d of %d", onVictim, holdConns)
	if label == "ours" {
		e.check(t, sc, "BFD took "+victim+" out of the route before the 3 s hold time", conv0 < 3*time.Second, "%s", conv0.Round(time.Millisecond))
		e.check(t, sc, "no connection broke while "+victim+" was frozen", frozen == 0, "%d of %d broke", frozen, opened)
		e.check(t, sc, "no connection broke when "+victim+" came back", thawed == 0, "%d broke", thawed)
	}
}

// routerRestart: FRR restarts; the ECMP route comes back by itself.
func (e *env) routerRestart(t *testing.T) {
	const sc = "router restart"
	ctx := context.Background()
	load := e.startLoad(t, "router", 10)
	time.Sleep(time.Second)
	t0 := time.Now()
	if err := e.lab.RestartRole(ctx, router, 5*time.Second); err != nil {
		e.stopLoad(t, sc, load)
		e.fatal(t, sc, err)
	}
	_, err := observe.WaitNextHops(ctx, e.lab, router, vip, addrs(directors...), 2*time.Minute)
	back := time.Since(t0)
	time.Sleep(2 * time.Second)
	res := e.stopLoad(t, sc, load)
	e.report.Router = &RouterRestart{Back: back, Requests: res.Sent, Failed: res.Failed}
	e.check(t, sc, "the ECMP route over every director came back without operator action", err == nil, "after %s (%v)", back.Round(time.Millisecond), err)
	if err == nil {
		e.check(t, sc, "requests succeed again", e.sample(t, sc, 60).Failed == 0, "")
	}
}
