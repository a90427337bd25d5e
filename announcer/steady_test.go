package announcer

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
)

// counts returns the IPVS changes the fake has seen and the passes run.
func (w *world) counts() (writes, passes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writes, w.applyRuns
}

// TestLoopSteadyStateWritesNothing: with every backend healthy, the passes of
// many resync intervals leave IPVS alone.
func TestLoopSteadyStateWritesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, _ := upLoop(t)
		writes0, passes0 := w.counts()
		time.Sleep(20 * cfg.Director.ResyncInterval)
		synctest.Wait()
		writes, passes := w.counts()
		if passes-passes0 < 20 {
			t.Fatalf("%d passes in 20 resync intervals: the window proves nothing", passes-passes0)
		}
		if writes != writes0 {
			t.Errorf("%d IPVS changes in %d steady passes, want none", writes-writes0, passes-passes0)
		}
	})
}

// TestLoopFailingBackendIsOneWriteEachWay: a backend of a service whose
// scheduler skips weight 0 (mh with mh-fallback) fails for many drain
// delays and recovers; IPVS sees one change when it fails and one when it
// recovers, not a deletion at the drain deadline and a re-add (which
// rewrites the order of the service's other destinations).
func TestLoopFailingBackendIsOneWriteEachWay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		cfg.Director.HoldDown = 0
		for i := range cfg.Services {
			cfg.Services[i].SchedulerFlags = []string{"mh-port", "mh-fallback"}
		}
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		w.setHealth(healthOf(cfg, allUp))
		_, stop := startLoop(t, cfg, w)
		defer stop()
		synctest.Wait()
		writes0, _ := w.counts()
		// The lower address: the kernel lists it last, so adding it back
		// at the head would need the other destination re-added after it.
		w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": down, "10.0.2.22": up, "10.0.2.31": up}))
		synctest.Wait()
		time.Sleep(3 * cfg.Director.DrainDelay)
		synctest.Wait()
		failed, _ := w.counts()
		if got := w.weights("198.18.0.10"); got != "10.0.2.21:80=0 10.0.2.22:80=1" {
			t.Errorf("after three drain delays failing: %s, want 10.0.2.21 kept at weight 0", got)
		}
		w.setHealth(healthOf(cfg, allUp))
		synctest.Wait()
		recovered, _ := w.counts()
		if failed-writes0 != 1 || recovered-failed != 1 {
			t.Errorf("IPVS changes: %d while failing, %d to recover; want 1 and 1", failed-writes0, recovered-failed)
		}
	})
}

// scaleConfig is services mh services of reals backends each, every service
// probing its own port (distinct targets), with no hold-down; it returns
// the VIPs too.
func scaleConfig(services, reals int) (*config.Config, []string) {
	var svcs []config.Service
	var vips []string
	for i := range services {
		vip := netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}).String()
		var addrs []string
		for j := range reals {
			addrs = append(addrs, netip.AddrFrom4([4]byte{10, 0, 3, byte(j + 1)}).String())
		}
		s := webService(fmt.Sprintf("s%d", i), vip, 1, addrs...)
		for j := range s.Backends {
			s.Backends[j].Port = uint16(10000 + i)
		}
		svcs = append(svcs, s)
		vips = append(vips, vip)
	}
	cfg := testConfig(svcs...)
	cfg.Director.HoldDown = 0
	return cfg, vips
}

// TestLoopStartUpProgramsEachServiceOnceLearned: at start the first pass
// runs before any probe and programs nothing; each service then enters IPVS
// once every one of its real servers has a first verdict, created without
// a scheduler, its real servers added at their verdicts' weights, and mh
// bound after them (the kernel builds its table once). That is one write
// per real server, as keepalived's start-up makes, plus the bind. Adding
// each at weight 0 first cost a second write per real server, and a table
// build per write.
func TestLoopStartUpProgramsEachServiceOnceLearned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const services, reals = 20, 10
		cfg, vips := scaleConfig(services, reals)
		w := newWorld(t, vips...)
		_, stop := startLoop(t, cfg, w)
		defer stop()
		synctest.Wait()
		writes, passes := w.counts()
		if passes != 1 || writes != 0 {
			t.Errorf("%d passes and %d IPVS writes before any verdict, want 1 and 0", passes, writes)
		}
		w.mu.Lock()
		if n := len(w.services); n != 0 {
			t.Errorf("%d services in IPVS before any verdict, want none", n)
		}
		w.mu.Unlock()
		if got := w.advertised(); len(got) != 0 {
			t.Errorf("advertised while learning: %v", got)
		}
		w.mu.Lock()
		order := slices.IndexFunc(w.log, func(s string) bool { return strings.HasPrefix(s, "ipvs.Apply") }) <
			slices.IndexFunc(w.log, func(s string) bool { return strings.HasPrefix(s, "health.Update") })
		w.mu.Unlock()
		if !order {
			t.Errorf("probes started before the first pass programmed IPVS (competing with it for the CPU): %v", w.log)
		}

		all := map[string]health.State{}
		for j := range reals {
			all[netip.AddrFrom4([4]byte{10, 0, 3, byte(j + 1)}).String()] = up
		}
		w.setHealth(healthOf(cfg, all))
		synctest.Wait()
		learned, _ := w.counts()
		if got, want := learned-writes, services*(reals+2); got != want {
			t.Errorf("%d IPVS writes for %d services' first verdicts, want %d (create, each real server at its weight, bind mh)", got, services, want)
		}
		if got := w.weights(vips[0]); !strings.HasPrefix(got, "10.0.3.10:10000=1 10.0.3.1:10000=1") {
			t.Errorf("%s after learning: %s", vips[0], got)
		}
		if got := w.advertised(); len(got) != services {
			t.Errorf("%d VIPs advertised after learning, want %d", len(got), services)
		}
	})
}

// TestLoopPacesPassesUnderAVerdictStorm: passes take a second each and a
// verdict changes every 10 ms for 20 s (an overloaded director at scale).
// Back to back, the loop would run a pass per second and leave nothing for
// the probes; paced, it runs at most one per two seconds, the last verdict
// still reaches IPVS, and a shutdown finishes within its budget.
func TestLoopPacesPassesUnderAVerdictStorm(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		w.mu.Lock()
		w.applyDelay = time.Second
		w.mu.Unlock()
		_, passes0 := w.counts()
		for i := range 2000 {
			st := up
			if i%2 == 1 {
				st = down
			}
			w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": up, "10.0.2.22": st, "10.0.2.31": up}))
			time.Sleep(10 * time.Millisecond)
		}
		_, passes := w.counts()
		if n := passes - passes0; n < 5 || n > 13 {
			t.Errorf("%d passes of 1 s in 20 s of verdict changes, want about 10 (paced to half the time)", n)
		}
		synctest.Wait()
		time.Sleep(3 * time.Second) // the paced pass that takes the last verdict
		synctest.Wait()
		if got := w.weights("198.18.0.10"); got != "10.0.2.21:80=1 10.0.2.22:80=0" {
			t.Errorf("after the storm: %s, want the last verdict (10.0.2.22 down)", got)
		}
		if got := l.SlowestPass(); got < time.Second {
			t.Errorf("SlowestPass = %s after 1 s passes; the shutdown budget relies on it", got)
		}
		w.setHealth(healthOf(cfg, allUp))
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := l.Shutdown(ctx); err != nil {
			t.Errorf("shutdown during the storm: %v", err)
		}
	})
}

// TestLoopCountersDoNotHoldUpPasses: reading the IPVS counters takes a
// minute (thousands of services, one dump each, on a slow machine); a
// command still returns at once, because no pass waits for the read.
func TestLoopCountersDoNotHoldUpPasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		w.mu.Lock()
		w.statsDelay = time.Minute
		w.mu.Unlock()
		time.Sleep(2 * cfg.Director.ResyncInterval) // a read is under way
		start := time.Now()
		if err := l.DrainBackend(t.Context(), BackendRef{Addr: netip.MustParseAddr("10.0.2.21")}, Note{}); err != nil {
			t.Fatal(err)
		}
		if took := time.Since(start); took > time.Second {
			t.Errorf("drain took %s while the counters were being read, want at once", took)
		}
		time.Sleep(2 * time.Minute) // the slow read ends; a later pass publishes it
		synctest.Wait()
		if sv, _ := l.Status().Service("web"); sv.Counters.Connections != 7 {
			t.Errorf("status counters %+v, want the reader's (7 connections)", sv.Counters)
		}
	})
}

// TestLoopLongPassIsNotPacedIntoTheWatchdog: a pass that moves for 5 s
// (longer than the watchdog's 3 s here) while verdicts keep changing is
// followed by the next pass within a second; pacing used to wait as long as
// the pass took, and the watchdog saw no pass finish and none running for
// longer than its bound.
func TestLoopLongPassIsNotPacedIntoTheWatchdog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, w, l := upLoop(t)
		if bound := time.Duration(cfg.Director.MaxFailedResyncs) * cfg.Director.ResyncInterval; bound >= 5*time.Second {
			t.Fatalf("watchdog bound %s; the test needs it under the 5 s pass", bound)
		}
		steps := make(chan struct{})
		w.mu.Lock()
		w.steps = steps
		runs := w.applyRuns
		w.mu.Unlock()
		go func() {
			for range 10 {
				time.Sleep(500 * time.Millisecond)
				steps <- struct{}{}
			}
			close(steps)
		}()
		l.Poke()
		start := time.Now()
		var wedged []time.Duration
		var longEnded time.Duration
		for i := range 100 {
			st := down
			if i%2 == 0 {
				st = up
			}
			w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": up, "10.0.2.22": st, "10.0.2.31": up}))
			time.Sleep(100 * time.Millisecond)
			if l.Wedged() {
				wedged = append(wedged, time.Since(start))
			}
			w.mu.Lock()
			if n := w.applyRuns; n == runs+1 && longEnded == 0 {
				longEnded = time.Since(start)
			}
			w.mu.Unlock()
		}
		if len(wedged) > 0 {
			t.Errorf("loop seen as wedged at %v after a 5 s pass that kept moving", wedged)
		}
		if longEnded < 5*time.Second {
			t.Fatalf("the long pass ended after %s, want 5 s", longEnded)
		}
		w.mu.Lock()
		n := w.applyRuns - runs
		w.mu.Unlock()
		// 10 s: the 5 s pass, then passes of no time at most a second apart.
		if n < 5 {
			t.Errorf("%d passes in the 10 s from a 5 s pass, want the next within a second of it and more after", n)
		}
	})
}
