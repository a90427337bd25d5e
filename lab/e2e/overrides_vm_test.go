//go:build linux && vm

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/observe"
	"github.com/anycast-director/director/lab/runner"
)

// ctl runs directorctl in a node and fails the scenario on an error.
func (e *env) ctl(t *testing.T, sc, node string, args ...string) string {
	t.Helper()
	out, err := e.lab.Exec(context.Background(), node, append([]string{"directorctl"}, args...)...)
	if err != nil {
		e.fatal(t, sc, fmt.Errorf("%s: directorctl %s: %v %s", node, strings.Join(args, " "), err, out))
	}
	return out
}

// overridesInForce checks, on the director's kernel and at the router,
// what the overrides of overridesSurviveRestart do: rs1 drained (weight 0
// or gone), rs2 at weight 3, and the VIP withdrawn (the router does not
// route it to this director).
func (e *env) overridesInForce(ctx context.Context, node string) error {
	tbl, err := observe.ReadIPVS(e.lab, node)
	if err != nil {
		return err
	}
	for _, port := range []string{"80", "7000"} {
		if d := tbl[vip+":"+port].Dest(serverAddr["rs1"] + ":" + port); d != nil && d.Weight != 0 {
			return fmt.Errorf("%s: rs1 on port %s has weight %d, want drained", node, port, d.Weight)
		}
		if d := tbl[vip+":"+port].Dest(serverAddr["rs2"] + ":" + port); d == nil || d.Weight != 3 {
			return fmt.Errorf("%s: rs2 on port %s is %+v, want weight 3", node, port, d)
		}
	}
	hops, err := observe.NextHops(ctx, e.lab, router, vip)
	if err != nil {
		return err
	}
	if slices.Contains(hops, directorAddr[node]) {
		return fmt.Errorf("the router routes %s to %v, %s included: its VIP is disabled", vip, hops, node)
	}
	return nil
}

// overridesSurviveRestart: a drain, a weight and a disabled VIP set on one
// director stay in force across SIGTERM and start: the restarted daemon
// never announces the disabled VIP (no route change) and programs the
// drain and the weight as before.
func (e *env) overridesSurviveRestart(t *testing.T) {
	const sc, victim = "overrides survive a restart", "d1"
	ctx := context.Background()
	e.ctl(t, sc, victim, "drain", serverAddr["rs1"], "--reason", "e2e: overrides survive a restart")
	e.ctl(t, sc, victim, "weight", serverAddr["rs2"], "3", "--reason", "e2e: overrides survive a restart")
	e.ctl(t, sc, victim, "vip", "disable", vip, "--reason", "e2e: overrides survive a restart")
	if _, err := observe.WaitNextHops(ctx, e.lab, router, vip, addrs(except(directors, victim)...), 30*time.Second); err != nil {
		e.fatal(t, sc, err)
	}
	if err := e.overridesInForce(ctx, victim); err != nil {
		e.fatal(t, sc, fmt.Errorf("before the restart: %w", err))
	}
	var ready time.Duration
	changes, err := e.lab.RouteChanges(ctx, router, vip, func() error {
		t0 := time.Now()
		if err := e.lab.Restart(ctx, victim, runner.Stop{Signal: syscall.SIGTERM, Grace: 30 * time.Second}); err != nil {
			return err
		}
		for {
			err := e.daemonReady(ctx, victim)
			if err == nil {
				ready = time.Since(t0)
				time.Sleep(3 * time.Second) // hold_down and a few passes: time to announce, were it to
				return nil
			}
			if time.Since(t0) > 2*time.Minute {
				return err
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if err != nil {
		e.fatal(t, sc, err)
	}
	s, serr := e.status(ctx, victim)
	kinds := []string{}
	for _, o := range s.Overrides {
		kinds = append(kinds, o.Kind)
	}
	e.check(t, sc, "the restarted daemon lists the three overrides", serr == nil && len(s.Overrides) >= 3, "%v (%v)", kinds, serr)
	ierr := e.overridesInForce(ctx, victim)
	e.check(t, sc, "drain, weight and disabled VIP in force after the restart", ierr == nil, "%v", ierr)
	e.check(t, sc, "the router's route did not change during the restart (the disabled VIP never announced)", len(changes) == 0, "%d route changes", len(changes))
	e.report.Operations = append(e.report.Operations, Operation{Event: sc + " (drain, weight 3, VIP disabled; SIGTERM, start)",
		Director: victim, RouteChanges: len(changes), Back: ready, NoTraffic: true})

	e.ctl(t, sc, victim, "vip", "enable", vip)
	e.ctl(t, sc, victim, "weight", serverAddr["rs2"], "--clear")
	e.ctl(t, sc, victim, "enable", serverAddr["rs1"])
	if err := e.steady(ctx, time.Minute); err != nil {
		e.fatal(t, sc+" (restore)", err)
	}
}

// rollbackThenSIGHUP: a reload, a rollback, then SIGHUP: the rollback
// wrote the rolled-back version into the configuration file (a file bound
// into the node, rewritten in place), so the SIGHUP keeps it.
func (e *env) rollbackThenSIGHUP(t *testing.T) {
	const sc, victim = "rollback, then SIGHUP", "d2"
	ctx := context.Background()
	path := filepath.Join(e.dir, "lab/topology/directors", victim+".yaml")
	orig, err := os.ReadFile(path)
	if err != nil {
		e.fatal(t, sc, err)
	}
	from, to := "{ address: 10.0.1.22, weight: 1 }", "{ address: 10.0.1.22, weight: 2 }"
	if strings.Count(string(orig), from) != 1 {
		e.fatal(t, sc, fmt.Errorf("%s does not contain %q once", path, from))
	}
	changed := []byte(strings.Replace(string(orig), from, to, 1))
	if err := os.WriteFile(path, changed, 0o644); err != nil {
		e.fatal(t, sc, err)
	}
	e.ctl(t, sc, victim, "reload")
	if err := e.weightOn(victim, "10.0.1.22", 2, 30*time.Second); err != nil {
		e.fatal(t, sc, err)
	}
	e.ctl(t, sc, victim, "rollback", "--reason", "e2e: rollback, then SIGHUP")
	file, _ := os.ReadFile(path)
	e.check(t, sc, "the rollback wrote the rolled-back version into the configuration file", string(file) == string(orig),
		"the file's digest is %s, the rolled-back version's %s", config.Digest(file), config.Digest(orig))
	before, err := e.reloadAttempt(ctx, victim)
	if err != nil {
		e.fatal(t, sc, err)
	}
	if err := e.lab.SignalRole(victim, syscall.SIGHUP); err != nil {
		e.fatal(t, sc, err)
	}
	if err := e.waitReloadAfter(ctx, victim, before, 30*time.Second); err != nil {
		e.fatal(t, sc, err)
	}
	s, serr := e.status(ctx, victim)
	e.check(t, sc, "after SIGHUP the rolled-back configuration runs", serr == nil && s.Config.Digest == config.Digest(orig),
		"runs %s, the rolled-back version is %s (%v)", s.Config.Digest, config.Digest(orig), serr)
	werr := e.weightOn(victim, "10.0.1.22", 1, 5*time.Second)
	e.check(t, sc, "after SIGHUP rs2 keeps the rolled-back weight 1", werr == nil, "%v", werr)
	e.report.Operations = append(e.report.Operations, Operation{Event: sc + " (reload of rs2 weight 2, rollback, SIGHUP)",
		Director: victim, NoTraffic: true, Note: "the rolled-back configuration stays"})
	if werr != nil || s.Config.Digest != config.Digest(orig) {
		if err := os.WriteFile(path, orig, 0o644); err != nil {
			e.fatal(t, sc+" (restore)", err)
		}
		e.ctl(t, sc, victim, "reload")
	}
	if err := e.steady(ctx, time.Minute); err != nil {
		e.fatal(t, sc+" (restore)", err)
	}
}

// weightOn waits until a director's IPVS has weight w for addr on both
// services.
func (e *env) weightOn(node, addr string, w int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		tbl, err := observe.ReadIPVS(e.lab, node)
		ok := err == nil
		for _, port := range []string{"80", "7000"} {
			if d := tbl[vip+":"+port].Dest(addr + ":" + port); ok && (d == nil || d.Weight != w) {
				ok = false
			}
		}
		if ok {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s is not at weight %d after %s (%v)", node, addr, w, timeout, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// reloadAttempt reads when a director last attempted a reload
// (directord_config_last_reload_attempt_timestamp_seconds).
func (e *env) reloadAttempt(ctx context.Context, node string) (float64, error) {
	out, err := e.metricsPage(ctx, node)
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "directord_config_last_reload_attempt_timestamp_seconds "); ok {
			var f float64
			_, err := fmt.Sscan(v, &f)
			return f, err
		}
	}
	return 0, fmt.Errorf("%s: no directord_config_last_reload_attempt_timestamp_seconds in the metrics", node)
}

// metricsPage reads a director's metrics from inside its node (bash's
// /dev/tcp: the lab's nodes have no HTTP client).
func (e *env) metricsPage(ctx context.Context, node string) (string, error) {
	out, err := e.lab.Exec(ctx, node, "bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/9469 && printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3 && cat <&3")
	if err != nil {
		return "", fmt.Errorf("%s: read the metrics: %v %s", node, err, out)
	}
	return out, nil
}

// waitReloadAfter waits until a director attempted a reload after before.
func (e *env) waitReloadAfter(ctx context.Context, node string, before float64, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		at, err := e.reloadAttempt(ctx, node)
		if err == nil && at > before {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not reload within %s of SIGHUP (%v)", node, timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
