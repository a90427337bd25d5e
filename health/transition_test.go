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

// TestSchedulerOverloadConfirmsChangesFirst: while the scheduler is
// stretched, a target that is down or whose verdict is on its way to change
// probes every slot, so a failure is confirmed in fall intervals, not in
// fall stretched intervals, and a down target that answers again is probed
// within its interval and back up rise intervals later. One set of targets fails right after
// the stall (Up to Down, fall 3), another that was failing answers again
// (Down to Up, rise 2). Thinning their slots like a settled target's made
// detection and recovery at 10,000 distinct targets in the VM take stretch
// times longer (recovery 17.7 s against keepalived's 6.2 s at a stretch of
// 4 to 8), while the probes it saved were few: only targets in transition
// are exempt.
func TestSchedulerOverloadConfirmsChangesFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, changing = 1000, 10
		var switched atomic.Bool
		var sched atomic.Pointer[Scheduler]
		var mu sync.Mutex
		stretchAt := map[uint16]float64{} // at the first probe after the switch
		f := newFake(func(_ context.Context, tg Target) error {
			i, after := int(tg.Port)-1000, switched.Load()
			if s := sched.Load(); after && s != nil && i < 2*changing {
				mu.Lock()
				if _, ok := stretchAt[tg.Port]; !ok {
					stretchAt[tg.Port] = s.Load().Stretch
				}
				mu.Unlock()
			}
			// The first set fails after the switch; the second, before it.
			if i < changing && after || i >= changing && i < 2*changing && !after {
				return errors.New("connection refused")
			}
			return nil
		})
		var targets []Target
		for i := range n {
			tg := tcpTarget(uint16(1000+i), time.Second)
			tg.Spec.Rise, tg.Spec.Fall = 2, 3
			targets = append(targets, tg)
		}
		s, stop := stalledWith(t, f, targets)
		defer stop()
		from := time.Now()
		sched.Store(s)
		switched.Store(true)
		// The first probe that sees the change comes within a stretched
		// interval (2 s at stretch 2), the rest one interval apart.
		time.Sleep(5 * time.Second)
		synctest.Wait()
		snap := s.Snapshot()
		for i, tg := range targets[:2*changing] {
			down := i < changing
			want, probes := Up, 2 // rise
			if down {
				want, probes = Down, 3 // fall
			}
			var after []time.Time
			for _, at := range f.startTimes(ap(tg)) {
				if !at.Before(from) {
					after = append(after, at)
				}
			}
			if got := snap[tg.Key()].State; got != want {
				t.Fatalf("target %v: %v after the change, want %v (probes since: %v)", ap(tg), got, want, after)
			}
			mu.Lock()
			stretch := stretchAt[tg.Port]
			mu.Unlock()
			if stretch <= 1 {
				t.Fatalf("target %v: stretch %v at the first probe after the change, want above 1: the test needs an overloaded scheduler", ap(tg), stretch)
			}
			if len(after) < probes {
				t.Fatalf("target %v: %d probes since the change, want at least %d", ap(tg), len(after), probes)
			}
			if first := after[0].Sub(from); !down && first > 1100*time.Millisecond {
				t.Errorf("target %v, was down: first probe %v after it answers again, want within its 1 s interval (a down target is not thinned)", ap(tg), first)
			}
			limit := time.Duration(probes-1)*time.Second + 100*time.Millisecond
			if took := after[probes-1].Sub(after[0]); took > limit {
				t.Errorf("target %v: %v from the first probe that saw the change to the one that confirmed it %v, want at most %v (one interval per probe)",
					ap(tg), took, want, limit)
			}
		}
	})
}
