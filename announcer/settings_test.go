package announcer

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
)

// settingsCalls returns how many times the loop kept the settings and made
// the data plane read the kernel back, and the last settings it asked for.
func (w *world) settingsCalls() (n, resyncs int, last ipvs.Settings) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.settings) > 0 {
		last = w.settings[len(w.settings)-1]
	}
	return len(w.settings), w.resyncs, last
}

// TestLoopVerifiesKernelOnTicksAndReloads: the settings are kept and the
// services read back at start, on every resync tick and after a reload;
// health changes alone read nothing back.
func TestLoopVerifiesKernelOnTicksAndReloads(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		n, resyncs, last := w.settingsCalls()
		if n != 1 || resyncs != 1 || last.Sync != nil || last.ManageSysctls != cfg.IPVS.ManageSysctls {
			t.Fatalf("at start: %d settings calls, %d resyncs, last %+v; want one each", n, resyncs, last)
		}
		w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": down, "10.0.2.22": up, "10.0.2.31": up}))
		synctest.Wait()
		if n, resyncs, _ := w.settingsCalls(); n != 1 || resyncs != 1 {
			t.Errorf("a health change read the kernel back: %d settings calls, %d resyncs", n, resyncs)
		}
		time.Sleep(cfg.Director.ResyncInterval)
		synctest.Wait()
		if n, resyncs, _ := w.settingsCalls(); n != 2 || resyncs != 2 {
			t.Errorf("after a resync tick: %d settings calls, %d resyncs; want 2 and 2", n, resyncs)
		}
		next := cfg.Clone()
		next.Digest = "v2"
		next.IPVS.Sync = &config.Sync{Interface: "eth1", SyncID: 7, Group: config.DefaultSyncGroup, Port: 8848, TTL: 1}
		if _, err := l.Reload(t.Context(), next); err != nil {
			t.Fatal(err)
		}
		n, _, last = w.settingsCalls()
		want := ipvs.SyncConfig{Interface: "eth1", SyncID: 7, Group: config.DefaultSyncGroup, Port: 8848, TTL: 1}
		if n != 3 || last.Sync == nil || *last.Sync != want {
			t.Errorf("after the reload: %d settings calls, sync %+v; want 3 and %+v", n, last.Sync, want)
		}
		if !l.Status().Sync.Configured {
			t.Errorf("status does not show sync configured: %+v", l.Status().Sync)
		}
	})
}

// TestLoopReloadAppliesBeforeReadingBack: a reload that keeps the settings
// programs the new weights from the data plane's record, and the pass right
// after it reads the kernel back; before, the reload's own pass read every
// service back first, about half of SIGHUP to applied under emulation.
func TestLoopReloadAppliesBeforeReadingBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		_, resyncs, _ := w.settingsCalls()
		w.mu.Lock()
		w.log = nil
		w.mu.Unlock()
		next := cfg.Clone()
		next.Digest = "v2"
		next.Services[0].Backends[0].Weight = 3
		if _, err := l.Reload(t.Context(), next); err != nil {
			t.Fatal(err)
		}
		if got := w.weights("198.18.0.10"); got != "10.0.2.21:80=3 10.0.2.22:80=1" {
			t.Errorf("kernel when Reload returned: %s, want the new weight", got)
		}
		synctest.Wait()
		w.mu.Lock()
		log := slices.Clone(w.log)
		w.mu.Unlock()
		apply := slices.IndexFunc(log, func(s string) bool { return strings.HasPrefix(s, "ipvs.Apply") })
		resync := slices.Index(log, "ipvs.Resync")
		if apply < 0 || resync < apply {
			t.Errorf("operations after the reload: %q; want IPVS applied first, then read back", log)
		}
		if _, r, _ := w.settingsCalls(); r != resyncs+1 {
			t.Errorf("read-backs after the reload: %d, want 1", r-resyncs)
		}
	})
}

// TestLoopWithdrawsWhileSysctlsCannotBeSet: without sloppy_tcp and friends
// flows break when ECMP moves them, so the IPVS VIPs are not advertised
// until the sysctls are in place again.
func TestLoopWithdrawsWhileSysctlsCannotBeSet(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		cfg.Director.HoldDown = 0
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		w.settingsErr = errors.New("IPVS sysctls: set IPVS sysctl sloppy_tcp=1: permission denied")
		w.setHealth(healthOf(cfg, allUp))
		l, stop := startLoop(t, cfg, w)
		defer stop()
		synctest.Wait()
		if got := w.advertised(); len(got) != 0 {
			t.Errorf("advertised without the sysctls: %v", got)
		}
		v, _ := l.Status().VIP(netip.MustParseAddr("198.18.0.10"))
		if !strings.Contains(v.Reason, "flow-continuity sysctls not in place") || !strings.Contains(v.Reason, "sloppy_tcp") {
			t.Errorf("reason = %q", v.Reason)
		}
		w.mu.Lock()
		w.settingsErr = nil
		w.mu.Unlock()
		time.Sleep(cfg.Director.ResyncInterval)
		synctest.Wait()
		if got := w.advertised(); len(got) != 2 {
			t.Errorf("advertised once the sysctls are set: %v", got)
		}
	})
}

// TestTargetsCarryTheForwardingPath: a forwarding check probes the VIP and
// service port of its own service, so two services checking the same real
// server with it are two probes; without it they share one.
func TestTargetsCarryTheForwardingPath(t *testing.T) {
	web := webService("web", "198.18.0.10", 1, "10.0.2.21")
	api := webService("api", "198.18.0.11", 1, "10.0.2.21")
	cfg := testConfig(web, api)
	if n := len(Targets(cfg)); n != 1 {
		t.Fatalf("without forwarding checks: %d targets, want 1 (shared)", n)
	}
	for i := range cfg.Services {
		cfg.Services[i].Health.ForwardingCheck = true
	}
	cfg.Services[1].Forwarding = config.ForwardTunnel
	ts := Targets(cfg)
	if len(ts) != 2 {
		t.Fatalf("with forwarding checks: %d targets, want 2", len(ts))
	}
	want := []health.Path{{VIP: netip.MustParseAddr("198.18.0.10"), Port: 80},
		{VIP: netip.MustParseAddr("198.18.0.11"), Port: 80, Tunnel: true}}
	for i, tg := range ts {
		if tg.Path != want[i] {
			t.Errorf("target %d path %+v, want %+v", i, tg.Path, want[i])
		}
	}
}

// TestLoopSlowKernelReadsAreSpacedOut: every Apply takes 2 s (100 services
// read back under emulation on a loaded machine). Reading the kernel back on
// every resync tick kept the loop in such passes and the watchdog withdrew
// every VIP; the loop reads back at most a tenth of the time, and still
// does.
func TestLoopSlowKernelReadsAreSpacedOut(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, w, _ := upLoop(t)
		w.mu.Lock()
		w.applyDelay = 2 * time.Second
		w.mu.Unlock()
		time.Sleep(10 * time.Second) // a read back of 2 s is recorded
		_, resyncs0, _ := w.settingsCalls()
		time.Sleep(100 * time.Second)
		_, resyncs, _ := w.settingsCalls()
		if n := resyncs - resyncs0; n < 2 || n > 6 {
			t.Errorf("%d reads back in 100 s of 2 s passes, want about 5 (at most a tenth of the time, and not none)", n)
		}
	})
}

// TestVerifyCutShortByShutdownIsNoFailure: a settings read that the
// daemon's own shutdown cancels is neither logged as an error (it was, on
// every SIGTERM) nor recorded as failed settings that withdraw the VIPs.
func TestVerifyCutShortByShutdownIsNoFailure(t *testing.T) {
	cfg := twoServiceConfig()
	w := newWorld(t, "198.18.0.10", "198.18.0.11")
	w.settingsErr = context.Canceled
	var logged bytes.Buffer
	l := New(cfg, w.deps(), slog.New(slog.NewTextHandler(&logged, nil)), Options{})
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	st := &state{cfg: cfg, verify: true}
	l.verify(ctx, st)
	if st.settingsErr != nil {
		t.Errorf("settings recorded as failed after a cancelled read: %v", st.settingsErr)
	}
	if !st.verify {
		t.Error("a cancelled read is not asked for again")
	}
	if strings.Contains(logged.String(), "level=ERROR") {
		t.Errorf("a cancelled read was logged as an error:\n%s", logged.String())
	}
}

// TestLoopReloadGivesHealthOnlyChangedTargets: a reload that changes a
// weight leaves the health checks alone (their targets are the same); one
// that changes a check hands them the new targets.
func TestLoopReloadGivesHealthOnlyChangedTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		updates := func() int {
			w.mu.Lock()
			defer w.mu.Unlock()
			return len(slices.DeleteFunc(slices.Clone(w.log), func(s string) bool { return !strings.HasPrefix(s, "health.Update") }))
		}
		before := updates()
		weight := cfg.Clone()
		weight.Digest = "v2"
		weight.Services[0].Backends[0].Weight = 3
		if _, err := l.Reload(t.Context(), weight); err != nil {
			t.Fatal(err)
		}
		if n := updates() - before; n != 0 {
			t.Errorf("a weight change gave the health checks their targets %d times, want none", n)
		}
		check := weight.Clone()
		check.Digest = "v3"
		check.Services[1].Health.Interval = 3 * time.Second
		if _, err := l.Reload(t.Context(), check); err != nil {
			t.Fatal(err)
		}
		w.mu.Lock()
		targets := slices.Clone(w.targets)
		w.mu.Unlock()
		if n := updates() - before; n != 1 {
			t.Errorf("a check change gave the health checks their targets %d times, want once", n)
		}
		if !slices.ContainsFunc(targets, func(tg health.Target) bool { return tg.Spec.Interval == 3*time.Second }) {
			t.Errorf("the health checks do not have the new interval: %+v", targets)
		}
	})
}
