package health

import (
	"context"
	"errors"
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
