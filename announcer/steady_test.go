package announcer

import (
	"context"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

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

// TestLoopStartUpWritesEachDestinationOnce: while backends learn their first
// verdicts, a service stays out of IPVS; once all of its backends have one,
// it is created with each destination added once at its weight (plus, for
// mh with several destinations, binding the scheduler once they are in).
// Adding them at weight 0 first wrote every destination twice.
func TestLoopStartUpWritesEachDestinationOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg := twoServiceConfig()
		cfg.Director.HoldDown = 0
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		_, stop := startLoop(t, cfg, w)
		defer stop()
		synctest.Wait()
		w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": up}))
		synctest.Wait()
		if got := w.weights("198.18.0.10"); got != "" {
			t.Errorf("web with one of two verdicts: %q in IPVS, want nothing yet", got)
		}
		w.setHealth(healthOf(cfg, allUp))
		synctest.Wait()
		writes, _ := w.counts()
		// web: create, 2 destinations, bind mh; api: create, 1 destination.
		if writes != 6 {
			t.Errorf("%d IPVS writes to learn and program 2 services of 3 destinations, want 6", writes)
		}
		if got := w.weights("198.18.0.10"); got != "10.0.2.21:80=1 10.0.2.22:80=1" {
			t.Errorf("web after learning: %s", got)
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
