package announcer

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/routing"
	"github.com/google/go-cmp/cmp"
)

// startLoop runs a loop for cfg against w inside the current synctest bubble.
func startLoop(t *testing.T, cfg *config.Config, w *world) (*Loop, context.CancelFunc) {
	t.Helper()
	l := New(cfg, w.deps(), slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
	return l, runLoop(t, l)
}

// runLoop runs l until the returned stop is called, which waits for Run to
// return context.Canceled.
func runLoop(t *testing.T, l *Loop) (stop func()) {
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := l.Run(ctx); !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
	}()
	return func() { cancel(); <-done }
}

func twoServiceConfig() *config.Config {
	cfg := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21", "10.0.2.22"),
		webService("api", "198.18.0.11", 1, "10.0.2.31"))
	cfg.Digest = "v1"
	return cfg
}

var allUp = map[string]health.State{"10.0.2.21": up, "10.0.2.22": up, "10.0.2.31": up}

// upLoop runs a loop on twoServiceConfig (no hold-down) with every backend up,
// after its first passes; it stops with the test.
func upLoop(t *testing.T) (*config.Config, *world, *Loop) {
	t.Helper()
	cfg := twoServiceConfig()
	cfg.Director.HoldDown = 0
	w := newWorld(t, "198.18.0.10", "198.18.0.11")
	w.setHealth(healthOf(cfg, allUp))
	l, stop := startLoop(t, cfg, w)
	t.Cleanup(stop)
	synctest.Wait()
	return cfg, w, l
}

func TestLoopAdvertisesAfterLearnAndHoldDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		l, stop := startLoop(t, cfg, w)
		defer stop()
		synctest.Wait()
		if got := w.advertised(); len(got) != 0 {
			t.Fatalf("advertised during the learn period: %v", got)
		}
		if len(w.targets) != 3 {
			t.Errorf("health targets = %d, want 3", len(w.targets))
		}
		if s := l.Status(); !s.Learning || s.VIPs[0].Reason != "learning" {
			t.Errorf("status during learn: learning=%v reason=%q", s.Learning, s.VIPs[0].Reason)
		}
		w.setHealth(healthOf(cfg, allUp))
		synctest.Wait()
		if got := w.advertised(); len(got) != 0 {
			t.Fatalf("advertised before the hold-down ended: %v", got)
		}
		time.Sleep(cfg.Director.HoldDown)
		synctest.Wait()
		if diff := cmp.Diff([]string{"198.18.0.10", "198.18.0.11"}, w.advertised()); diff != "" {
			t.Errorf("advertised after hold-down (-want +got):\n%s", diff)
		}
		s := l.Status()
		if v, _ := s.VIP(netip.MustParseAddr("198.18.0.10")); !v.Advertised || v.Reason != "healthy 2/2" {
			t.Errorf("status VIP = %+v", v)
		}
		if sv, _ := s.Service("web"); !sv.Programmed || sv.Fingerprint == "" || sv.Backends[0].Effective != 1 {
			t.Errorf("status service = %+v", sv)
		}
	})
}

func TestLoopWithdrawsBeforeProgrammingWeightZero(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		w.mu.Lock()
		w.log = nil
		w.mu.Unlock()
		// Both backends of web fail: the fakes fail the test if IPVS is
		// programmed to weight 0 while the VIP is still advertised.
		w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": down, "10.0.2.22": down, "10.0.2.31": up}))
		synctest.Wait()
		if diff := cmp.Diff([]string{"198.18.0.11"}, w.advertised()); diff != "" {
			t.Errorf("advertised (-want +got):\n%s", diff)
		}
		w.mu.Lock()
		log := strings.Join(w.log, "; ")
		w.mu.Unlock()
		if !strings.HasPrefix(log, "routes.Set +[] -[198.18.0.10]; vips.Set 2; ipvs.Apply 2") {
			t.Errorf("operation order = %q, want withdraw, then bind, then IPVS", log)
		}
		if v, _ := l.Status().VIP(netip.MustParseAddr("198.18.0.10")); !strings.HasPrefix(v.Reason, "below min_healthy 0/2") {
			t.Errorf("reason = %q", v.Reason)
		}
	})
}

func TestLoopProgrammingFailureBlocksOnlyThatVIP(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		cfg.Director.HoldDown = 0
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		w.failKeys[testKey("198.18.0.10")] = errInjected
		w.setHealth(healthOf(cfg, allUp))
		l, stop := startLoop(t, cfg, w)
		defer stop()
		synctest.Wait()
		if diff := cmp.Diff([]string{"198.18.0.11"}, w.advertised()); diff != "" {
			t.Errorf("advertised (-want +got):\n%s", diff)
		}
		s := l.Status()
		v, _ := s.VIP(netip.MustParseAddr("198.18.0.10"))
		if v.Advertised || !strings.Contains(v.Reason, "programming failed") || !strings.Contains(v.Reason, "injected") {
			t.Errorf("failed VIP status = %+v", v)
		}
		if sv, _ := s.Service("web"); sv.Programmed || sv.Error == "" {
			t.Errorf("failed service status = %+v", sv)
		}
	})
}

func TestLoopWithoutIPVSServesLocalServices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		local := config.Service{Name: "dns", VIP: netip.MustParseAddr("198.18.0.53"), Port: 53,
			Protocol: config.UDP, Forwarding: config.ForwardLocal, MinHealthy: 1,
			Health: config.Check{Type: config.CheckTCP, Interval: time.Second, Timeout: time.Second / 2, Rise: 1, Fall: 1}}
		cfg := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21"), local)
		cfg.Director.HoldDown = 0
		w := newWorld(t, "198.18.0.10", "198.18.0.53")
		deps := w.deps()
		deps.IPVS = nil
		w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": up, "198.18.0.53": up}))
		l := New(cfg, deps, slog.New(slog.NewTextHandler(io.Discard, nil)), Options{})
		ctx, cancel := context.WithCancel(t.Context())
		go l.Run(ctx)
		defer cancel()
		synctest.Wait()
		if diff := cmp.Diff([]string{"198.18.0.53"}, w.advertised()); diff != "" {
			t.Errorf("advertised (-want +got):\n%s", diff)
		}
		if v, _ := l.Status().VIP(netip.MustParseAddr("198.18.0.10")); !strings.Contains(v.Reason, "IPVS is not available") {
			t.Errorf("IPVS VIP reason = %q", v.Reason)
		}
	})
}

func TestLoopWithdrawsAllAfterFailingResyncs(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		if len(w.advertised()) != 2 {
			t.Fatalf("setup: advertised %v", w.advertised())
		}
		w.mu.Lock()
		w.applyErr = errInjected
		w.mu.Unlock()
		l.Poke()
		// Still advertised while failures are younger than 3 resync intervals.
		time.Sleep(2 * cfg.Director.ResyncInterval)
		synctest.Wait()
		if len(w.advertised()) != 2 {
			t.Fatalf("withdrawn too early: %v", w.advertised())
		}
		time.Sleep(cfg.Director.ResyncInterval + time.Millisecond)
		synctest.Wait()
		if got := w.advertised(); len(got) != 0 {
			t.Fatalf("still advertised after %d failing resyncs: %v", cfg.Director.MaxFailedResyncs, got)
		}
		if s := l.Status(); !s.WithdrawnForFailures || !strings.Contains(s.LastError, "injected") {
			t.Errorf("status = withdrawn %v, error %q", s.WithdrawnForFailures, s.LastError)
		}
		w.mu.Lock()
		w.applyErr = nil
		w.mu.Unlock()
		time.Sleep(cfg.Director.ResyncInterval)
		synctest.Wait()
		if len(w.advertised()) != 2 {
			t.Errorf("not re-advertised after recovery: %v", w.advertised())
		}
	})
}

func TestLoopOverridesSurviveReloadAndRollback(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, w, l := upLoop(t)
		ctx := t.Context()
		b1 := netip.MustParseAddr("10.0.2.21")
		if err := l.DrainBackend(ctx, BackendRef{Addr: b1}, Note{Reason: "disk swap", Who: "test"}); err != nil {
			t.Fatal(err)
		}
		if err := l.DrainBackend(ctx, BackendRef{Addr: netip.MustParseAddr("10.9.9.9")}, Note{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("drain of an unknown backend: err = %v, want ErrNotFound", err)
		}
		if err := l.SetWeight(ctx, BackendRef{Addr: b1}, 70000, Note{}); !errors.Is(err, ErrInvalid) {
			t.Errorf("weight 70000: err = %v, want ErrInvalid", err)
		}
		cfg2 := twoServiceConfig()
		cfg2.Director.HoldDown = 0
		cfg2.Digest = "v2"
		cfg2.Services[0].Backends[1].Weight = 3
		v, err := l.Reload(ctx, cfg2)
		if err != nil || v.Version != 2 || v.Digest != "v2" {
			t.Fatalf("reload = %+v, %v", v, err)
		}
		synctest.Wait()
		if got := w.weights("198.18.0.10"); got != "10.0.2.21:80=0 10.0.2.22:80=3" {
			t.Errorf("after reload weights = %s, want the drain kept and the new weight", got)
		}
		v, err = l.Rollback(ctx, 0)
		if err != nil || v.Version != 3 || v.Digest != "v1" {
			t.Fatalf("rollback = %+v, %v", v, err)
		}
		synctest.Wait()
		if got := w.weights("198.18.0.10"); got != "10.0.2.21:80=0 10.0.2.22:80=1" {
			t.Errorf("after rollback weights = %s", got)
		}
		if _, err := l.Rollback(ctx, 42); !errors.Is(err, ErrNotFound) {
			t.Errorf("rollback to a missing version: %v", err)
		}
		if err := l.EnableBackend(ctx, BackendRef{Addr: b1}, Note{Who: "test"}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := w.weights("198.18.0.10"); got != "10.0.2.21:80=1 10.0.2.22:80=1" {
			t.Errorf("after enable weights = %s", got)
		}
	})
}

func TestLoopPreviewChangesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, w, l := upLoop(t)
		w.mu.Lock()
		applies := w.applyRuns
		w.mu.Unlock()
		cfg2 := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21", "10.0.2.23"),
			webService("api", "198.18.0.12", 1, "10.0.2.41"))
		cfg2.Director.HoldDown = 0
		changes, err := l.Preview(t.Context(), cfg2)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range changes {
			got = append(got, c.Action+" "+c.Kind+" "+c.Subject)
		}
		want := []string{
			"change destination tcp/198.18.0.10:80 -> 10.0.2.22:80",
			"add destination tcp/198.18.0.10:80 -> 10.0.2.23:80",
			"change destination tcp/198.18.0.11:80 -> 10.0.2.31:80",
			"add service tcp/198.18.0.12:80", // with its real servers, once learned
			"add destination tcp/198.18.0.12:80 -> 10.0.2.41:80",
			"add route 198.18.0.12/32",
			"remove route 198.18.0.11/32",
			"reset health web 10.0.2.23:80",
			"reset health api 10.0.2.41:80",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("preview (-want +got):\n%s", diff)
		}
		synctest.Wait()
		w.mu.Lock()
		defer w.mu.Unlock()
		if w.applyRuns != applies || l.Status().Config.Version != 1 {
			t.Errorf("preview changed state: applies %d -> %d, version %d", applies, w.applyRuns, l.Status().Config.Version)
		}
	})
}

func TestLoopShutdownIsGracefulThenLingers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		start := time.Now()
		done := make(chan error, 1)
		go func() { done <- l.Shutdown(t.Context()) }()
		synctest.Wait()
		if diff := cmp.Diff([]string{"198.18.0.10 gshut", "198.18.0.11 gshut"}, w.advertised()); diff != "" {
			t.Errorf("at shutdown start (-want +got):\n%s", diff)
		}
		time.Sleep(cfg.Director.GracefulShutdown)
		synctest.Wait()
		if got := w.advertised(); len(got) != 0 {
			t.Errorf("still advertised after the graceful period: %v", got)
		}
		w.mu.Lock()
		if len(w.services) != 2 {
			t.Errorf("IPVS must keep forwarding while lingering, services = %d", len(w.services))
		}
		w.mu.Unlock()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if took, want := time.Since(start), cfg.Director.GracefulShutdown+cfg.Director.Linger; took != want {
			t.Errorf("shutdown took %s, want graceful + linger = %s", took, want)
		}
	})
}

// TestLoopShutdownWithoutGracefulPeriodNeedsNoPass: with graceful_shutdown
// 0 the routes go at once, in the Shutdown command, and with linger 0 the
// shutdown is done without a reconcile pass (at 1,000 services under
// emulation a pass took about a second of the stop). The VIPs are still
// logged and recorded as withdrawn; IPVS keeps forwarding.
func TestLoopShutdownWithoutGracefulPeriodNeedsNoPass(t *testing.T) {
	for _, linger := range []time.Duration{0, 2 * time.Second} {
		t.Run(fmt.Sprint("linger ", linger), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := twoServiceConfig()
				cfg.Director.HoldDown, cfg.Director.GracefulShutdown, cfg.Director.Linger = 0, 0, linger
				w := newWorld(t, "198.18.0.10", "198.18.0.11")
				w.setHealth(healthOf(cfg, allUp))
				l, stop := startLoop(t, cfg, w)
				t.Cleanup(stop)
				synctest.Wait()
				if got := w.advertised(); len(got) != 2 {
					t.Fatalf("before the shutdown: advertised %v, want both VIPs", got)
				}
				_, mark, _, _ := l.Events().Since(0)
				w.mu.Lock()
				applies := w.applyRuns
				w.mu.Unlock()
				passes := l.Status().Passes
				start := time.Now()
				if err := l.Shutdown(t.Context()); err != nil {
					t.Fatal(err)
				}
				if took := time.Since(start); took != linger {
					t.Errorf("shutdown took %s, want the linger, %s", took, linger)
				}
				if got := w.advertised(); len(got) != 0 {
					t.Errorf("still advertised after the shutdown: %v", got)
				}
				w.mu.Lock()
				if len(w.services) != 2 {
					t.Errorf("IPVS must keep its services, has %d", len(w.services))
				}
				if linger == 0 && (w.applyRuns != applies || l.Status().Passes != passes) {
					t.Errorf("a pass ran for a shutdown with nothing to wait for: applies %d -> %d, passes %d -> %d",
						applies, w.applyRuns, passes, l.Status().Passes)
				}
				w.mu.Unlock()
				evs, _, _, _ := l.Events().Since(mark)
				withdrawn := 0
				for _, e := range evs {
					if e.Kind == EventVIP && e.To == "withdrawn" && e.Reason == "shutting down" {
						withdrawn++
					}
				}
				if withdrawn != 2 {
					t.Errorf("want 2 VIP withdrawn events (shutting down), got %+v", evs)
				}
			})
		})
	}
}

func TestLoopEventsResume(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		cfg.Director.HoldDown = 0
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		l, stop := startLoop(t, cfg, w)
		defer stop()
		synctest.Wait()
		_, mark, _, _ := l.Events().Since(0)
		w.setHealth(healthOf(cfg, allUp))
		synctest.Wait()
		evs, _, lost, _ := l.Events().Since(mark)
		if lost {
			t.Error("events lost")
		}
		kinds := map[EventKind]int{}
		for _, e := range evs {
			kinds[e.Kind]++
		}
		if kinds[EventHealth] != 3 || kinds[EventVIP] != 2 {
			t.Errorf("events after mark = %+v, want 3 health and 2 vip", evs)
		}
	})
}

func TestEventLogRing(t *testing.T) {
	l := NewEventLog(3)
	for i := 0; i < 5; i++ {
		l.Append(Event{Subject: string(rune('a' + i))})
	}
	evs, last, lost, _ := l.Since(1)
	if !lost || last != 5 || len(evs) != 3 || evs[0].Seq != 3 || evs[2].Subject != "e" {
		t.Errorf("Since(1) = %+v last=%d lost=%v", evs, last, lost)
	}
	evs, _, lost, _ = l.Since(4)
	if lost || len(evs) != 1 || evs[0].Seq != 5 {
		t.Errorf("Since(4) = %+v lost=%v", evs, lost)
	}
}

func TestLoopOverrideOnRemovedBackendCanBeLifted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		l, stop := startLoop(t, cfg, w)
		defer stop()
		synctest.Wait()
		ctx := t.Context()
		b := BackendRef{Addr: netip.MustParseAddr("10.0.2.22")}
		vip := netip.MustParseAddr("198.18.0.11")
		if err := l.DrainBackend(ctx, b, Note{}); err != nil {
			t.Fatal(err)
		}
		if err := l.SetWeight(ctx, b, 4, Note{}); err != nil {
			t.Fatal(err)
		}
		if err := l.DisableVIP(ctx, vip, Note{}); err != nil {
			t.Fatal(err)
		}
		// A reload removes the backend and the VIP.
		cfg2 := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21"))
		if _, err := l.Reload(ctx, cfg2); err != nil {
			t.Fatal(err)
		}
		if err := l.EnableBackend(ctx, b, Note{Who: "t"}); err != nil {
			t.Errorf("lifting a drain of a removed backend: %v", err)
		}
		if err := l.SetWeight(ctx, b, -1, Note{}); err != nil {
			t.Errorf("clearing a weight of a removed backend: %v", err)
		}
		if err := l.EnableVIP(ctx, vip, Note{Who: "t"}); err != nil {
			t.Errorf("enabling a removed VIP that was disabled: %v", err)
		}
		o := l.Status().Overrides
		if len(o.Drained)+len(o.Weights)+len(o.DisabledVIPs) != 0 {
			t.Errorf("overrides left: %+v", o)
		}
		if err := l.SetWeight(ctx, b, 3, Note{}); !errors.Is(err, ErrNotFound) {
			t.Errorf("a new override on a removed backend: err = %v, want ErrNotFound", err)
		}
	})
}

func TestLoopRestartKeepsKernelStateUntilVerdicts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		cfg.Director.HoldDown = 0
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		// What the previous daemon left: IPVS serving, routes in place
		// (announce: kernel keeps them across a restart).
		w.services[testKey("198.18.0.10")] = ipvsService("198.18.0.10", "10.0.2.22:80=1", "10.0.2.21:80=1")
		w.services[testKey("198.18.0.11")] = ipvsService("198.18.0.11", "10.0.2.31:80=1")
		w.bound[netip.MustParseAddr("198.18.0.10")] = true
		w.bound[netip.MustParseAddr("198.18.0.11")] = true
		for _, v := range []string{"198.18.0.10", "198.18.0.11"} {
			p := netip.PrefixFrom(netip.MustParseAddr(v), 32)
			w.ads[p] = routing.Advertisement{Prefix: p}
		}
		// First probes passed once; rise is 2, so no backend is up yet.
		rising := health.Snapshot{}
		for _, k := range Targets(cfg) {
			rising[k.Key()] = health.Result{State: health.Down, Reason: "rising 1/2", Probes: 1}
		}
		w.setHealth(rising)
		_, stop := startLoop(t, cfg, w)
		defer stop()
		synctest.Wait()
		if got := w.weights("198.18.0.10"); got != "10.0.2.22:80=1 10.0.2.21:80=1" && got != "10.0.2.21:80=1 10.0.2.22:80=1" {
			t.Errorf("after restart weights = %s, want the kernel's kept until verdicts", got)
		}
		if got := w.advertised(); len(got) != 2 {
			t.Errorf("routes during the learn period = %v, want the previous ones left alone", got)
		}
		// Verdicts arrive: normal operation.
		w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": up, "10.0.2.22": down, "10.0.2.31": up}))
		synctest.Wait()
		if got := w.weights("198.18.0.10"); got != "10.0.2.21:80=1 10.0.2.22:80=0" {
			t.Errorf("after verdicts weights = %s", got)
		}
		if got := w.advertised(); len(got) != 2 {
			t.Errorf("advertised after verdicts = %v", got)
		}
	})
}

// ipvsService builds a kernel service on port 80 from "addr:port=weight" items.
func ipvsService(vip string, dests ...string) ipvs.Service {
	s := ipvs.Service{Key: testKey(vip), Scheduler: "mh", Flags: []string{"mh-port"}}
	for _, d := range dests {
		ap, w, _ := strings.Cut(d, "=")
		weight := 0
		fmt.Sscan(w, &weight)
		a := netip.MustParseAddrPort(ap)
		s.Destinations = append(s.Destinations, ipvs.Destination{Address: a.Addr(), Port: a.Port(), Weight: weight, Forwarding: ipvs.DirectRoute})
	}
	return s
}

func TestLoopWakesAtTheDrainDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		cfg.Director.HoldDown = 0
		cfg.Director.ResyncInterval = time.Hour // only the deadline can wake the loop
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		w.setHealth(healthOf(cfg, allUp))
		l, stop := startLoop(t, cfg, w)
		defer stop()
		synctest.Wait()
		// An operator drain deletes the destination at the deadline (a
		// failing backend is only quiesced: it stays in IPVS at weight 0).
		if err := l.DrainBackend(context.Background(), BackendRef{Addr: netip.MustParseAddr("10.0.2.22")}, Note{}); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		w.mu.Lock()
		runs := w.applyRuns
		w.mu.Unlock()
		time.Sleep(cfg.Director.DrainDelay - time.Millisecond)
		synctest.Wait()
		if sv, _ := l.Status().Service("web"); sv.Backends[1].Deleted {
			t.Fatalf("deleted before the drain deadline: %+v", sv.Backends[1])
		}
		time.Sleep(time.Millisecond)
		synctest.Wait()
		w.mu.Lock()
		after := w.applyRuns
		w.mu.Unlock()
		sv, _ := l.Status().Service("web")
		if after != runs+1 || !sv.Backends[1].Deleted {
			t.Errorf("at the drain deadline: %d passes, backend %+v; want one pass that deletes it", after-runs, sv.Backends[1])
		}
	})
}

// TestLoopStartsNoPassOnceStopped: when Run's context ends during a pass
// while wake-ups are pending (a poke, a health change), Run returns after
// that pass instead of starting another against cancelled adapters. The
// daemon's SIGTERM cancels the context as soon as the shutdown pass has
// withdrawn the VIPs; that extra pass failed and delayed its exit by a pass
// (about 40 ms of the 130 ms from SIGTERM to exit at 100 services x 10 under
// emulation). Without the check, Run picks at random among the ready
// wake-ups and the end of its context: ten rounds catch it.
func TestLoopStartsNoPassOnceStopped(t *testing.T) {
	for round := range 10 {
		synctest.Test(t, func(t *testing.T) {
			cfg := twoServiceConfig()
			cfg.Director.HoldDown = 0
			w := newWorld(t, "198.18.0.10", "198.18.0.11")
			w.setHealth(healthOf(cfg, allUp))
			l, stop := startLoop(t, cfg, w)
			synctest.Wait()
			w.mu.Lock()
			w.block = make(chan struct{})
			before := w.applyCalls
			w.mu.Unlock()
			l.Poke()
			synctest.Wait() // that pass waits in Apply
			l.Poke()
			w.setHealth(healthOf(cfg, allUp)) // a health change pending too
			stop()
			w.mu.Lock()
			defer w.mu.Unlock()
			if got := w.applyCalls - before; got != 1 {
				t.Errorf("round %d: %d passes reached Apply after the poke, want 1 (none after the stop)", round, got)
			}
		})
	}
}
