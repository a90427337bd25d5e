package health

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestSchedulerOverloadConfirmsFailuresFirst: while the scheduler is
// stretched, a target that failed while Up probes every slot, so the
// failure is confirmed in fall intervals, not in fall stretched intervals.
// Thinning its slots like a settled target's made detection at 10,000
// distinct targets in the VM take stretch times longer.
func TestSchedulerOverloadConfirmsFailuresFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, failing = 1000, 10
		var switched atomic.Bool
		var sched atomic.Pointer[Scheduler]
		var mu sync.Mutex
		stretchAt := map[uint16]float64{} // at the first probe after the switch
		f := newFake(func(_ context.Context, tg Target) error {
			if tg.Port >= 1000+failing || !switched.Load() {
				return nil
			}
			if s := sched.Load(); s != nil {
				mu.Lock()
				if _, ok := stretchAt[tg.Port]; !ok {
					stretchAt[tg.Port] = s.Load().Stretch
				}
				mu.Unlock()
			}
			return errors.New("connection refused")
		})
		var targets []Target
		for i := range n {
			tg := tcpTarget(uint16(1000+i), time.Second)
			tg.Spec.Rise, tg.Spec.Fall = 1, 3
			targets = append(targets, tg)
		}
		s, stop := stalledWith(t, f, targets)
		defer stop()
		from := time.Now()
		sched.Store(s)
		switched.Store(true)
		// The first probe that sees the failure comes within a stretched
		// interval (2 s at stretch 2), the rest one interval apart.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		snap := s.Snapshot()
		for _, tg := range targets[:failing] {
			var after []time.Time
			for _, at := range f.startTimes(ap(tg)) {
				if !at.Before(from) {
					after = append(after, at)
				}
			}
			mu.Lock()
			stretch := stretchAt[tg.Port]
			mu.Unlock()
			if stretch <= 1 {
				t.Fatalf("target %v: stretch %v at the first probe after the failure, want above 1: the test needs an overloaded scheduler", ap(tg), stretch)
			}
			if got := snap[tg.Key()].State; got != Down || len(after) < 3 {
				t.Fatalf("target %v: %v after %d probes since it failed, want Down after at least 3", ap(tg), got, len(after))
			}
			if took := after[2].Sub(after[0]); took > 2100*time.Millisecond {
				t.Errorf("target %v: %v from the first failed probe to the third, want at most 2.1 s (one interval per probe)", ap(tg), took)
			}
		}
	})
}

// TestSchedulerOverloadThinsDownTargets: targets that are down, rising
// ones included, are thinned like healthy ones. Exempting them left a
// director whose targets were mostly down (the http benchmark's targets,
// rise 1+i, are all rising) no load to shed: it kept 0.23 of the demanded
// rate.
func TestSchedulerOverloadThinsDownTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 1000
		f := newFake(nil)
		var targets []Target
		for i := range n {
			tg := tcpTarget(uint16(1000+i), time.Second)
			tg.Spec.Rise = 1000 // rising for the whole test
			targets = append(targets, tg)
		}
		s, stop := stalledWith(t, f, targets)
		defer stop()
		from := time.Now()
		stretch := steadyStretch(t, s, 2*time.Second)
		total := 0
		for _, tg := range targets {
			for _, at := range f.startTimes(ap(tg)) {
				if !at.Before(from) {
					total++
				}
			}
		}
		if want := float64(2*n) / stretch; float64(total) > 1.2*want {
			t.Errorf("%d probes of rising targets in 2 s at stretch %v, want about %.0f: down targets must be thinned too", total, stretch, want)
		}
	})
}

// TestSchedulerOverloadProbesDownTargetsSooner: while the scheduler is
// stretched, Down targets are thinned at the transit stretch (smaller: a
// share of the measured capacity is kept for targets in transition), so a
// backend that comes back is seen about an interval later, not a stretched
// one. Thinned like healthy targets, recovery at 10,000 distinct targets in
// the VM took about 10 s at 2 s intervals (keepalived: 6.2 s). takeDue is
// driven by hand here, with both stretches set, so the meter does not move
// them.
func TestSchedulerOverloadProbesDownTargetsSooner(t *testing.T) {
	const n, down, stretch, transit = 1000, 50, 4.0, 1.25
	now := time.Unix(1000, 0)
	s := newTestScheduler(newFake(nil), Options{Now: func() time.Time { return now }})
	var targets []Target
	for i := range n {
		targets = append(targets, tcpTarget(uint16(1000+i), time.Second))
	}
	s.Update(targets)
	probes := map[uint16]int{}
	run := func(d time.Duration) {
		for end := now.Add(d); now.Before(end); now = now.Add(10 * time.Millisecond) {
			due, _ := s.takeDue()
			s.mu.Lock()
			for _, e := range due {
				e.running = false // the probe ends at once
				probes[e.port]++
			}
			s.mu.Unlock()
		}
	}
	run(3 * time.Second) // every target takes its first slots
	s.mu.Lock()
	for _, e := range s.entries {
		e.damp.state = Up
		if e.port < 1000+down {
			e.damp.state = Down
		}
	}
	s.mu.Unlock()
	s.meter.stretchBits.Store(math.Float64bits(stretch))
	s.meter.transitBits.Store(math.Float64bits(transit))
	clear(probes)
	const window = 40 * time.Second
	run(window)
	downs, ups := 0, 0
	for port, c := range probes {
		if port < 1000+down {
			downs += c
		} else {
			ups += c
		}
	}
	perDown, perUp := float64(downs)/down, float64(ups)/(n-down)
	if want := window.Seconds() / transit; math.Abs(perDown-want) > 0.1*want {
		t.Errorf("%.2f probes per down target in %v at transit stretch %v, want about %.1f", perDown, window, transit, want)
	}
	if want := window.Seconds() / stretch; math.Abs(perUp-want) > 0.1*want {
		t.Errorf("%.2f probes per healthy target in %v at stretch %v, want about %.1f", perUp, window, stretch, want)
	}
}

// TestSchedulerCountsTransitDemand: the meter's transit demand follows the
// targets as they fail, recover and are removed, probe by probe and at
// Update, so the stretches leave room for exactly those probes.
func TestSchedulerCountsTransitDemand(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, failing = 100, 10
		var broken atomic.Bool
		broken.Store(true)
		f := newFake(func(_ context.Context, tg Target) error {
			if tg.Port < 1000+failing && broken.Load() {
				return errors.New("connection refused")
			}
			return nil
		})
		var targets []Target
		for i := range n {
			tg := tcpTarget(uint16(1000+i), time.Second)
			if i%2 == 1 {
				tg = tcpTarget(uint16(1000+i), 2*time.Second)
			}
			tg.Spec.Rise, tg.Spec.Fall = 2, 2
			targets = append(targets, tg)
		}
		want := func(ts []Target) float64 { // probes/s of the failing ones among ts
			r := 0.0
			for _, tg := range ts {
				if tg.Port < 1000+failing {
					r += 1 / tg.Spec.Interval.Seconds()
				}
			}
			return r
		}
		s := newTestScheduler(f, Options{})
		s.Update(targets)
		stop := startScheduler(t, s)
		defer stop()
		time.Sleep(5 * time.Second)
		synctest.Wait()
		if got := s.meter.transit(); math.Abs(got-want(targets)) > 1e-9 {
			t.Errorf("transit demand %v with %d targets down, want %v", got, failing, want(targets))
		}
		broken.Store(false)
		time.Sleep(5 * time.Second) // rise 2 at intervals of at most 2 s
		synctest.Wait()
		if got := s.meter.transit(); got != 0 {
			t.Errorf("transit demand %v once every target is up, want 0", got)
		}
		broken.Store(true)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		s.Update(targets[failing/2:])
		if got := s.meter.transit(); math.Abs(got-want(targets[failing/2:])) > 1e-9 {
			t.Errorf("transit demand %v after removing half the down targets, want %v", got, want(targets[failing/2:]))
		}
	})
}
