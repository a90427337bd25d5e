package health

import (
	"context"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// downWatch records every target that was ever seen down.
type downWatch struct {
	mu   sync.Mutex
	down map[string]bool
}

// watchDowns polls s until the bubble's test ends and records downs.
func watchDowns(t *testing.T, s *Scheduler) *downWatch {
	w := &downWatch{down: map[string]bool{}}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	go func() {
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			for k, r := range s.Snapshot() {
				if r.State == Down {
					w.mu.Lock()
					w.down[k] = true
					w.mu.Unlock()
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return w
}

func (w *downWatch) any() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for k := range w.down {
		out = append(out, k)
	}
	return out
}

// TestSchedulerOverloadSkipsNeverFails: 200 healthy but slow backends (each
// probe takes 900 ms) and a fast canary, with room for 50 probes in flight:
// the scheduler cannot keep up, so it skips slots (never queues them, never
// fails them), reports the overload in Load, marks no backend down, and
// reports recovery once the load is gone.
func TestSchedulerOverloadSkipsNeverFails(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(func(ctx context.Context, tg Target) error {
			if tg.Port != 1 {
				time.Sleep(900 * time.Millisecond)
			}
			return nil
		})
		s := newTestScheduler(f, Options{Concurrency: 50})
		canary := tcpTarget(1, time.Second)
		targets := []Target{canary}
		for i := range 200 {
			tg := tcpTarget(uint16(1000+i), time.Second)
			tg.Spec.Timeout = 950 * time.Millisecond
			targets = append(targets, tg)
		}
		s.Update(targets)
		stop := startScheduler(t, s)
		defer stop()
		downs := watchDowns(t, s)
		time.Sleep(10 * time.Second)
		synctest.Wait()

		l := s.Load()
		if !l.Overloaded || l.Skipped[SkipLimit] == 0 || !strings.Contains(l.Reason, "at their limit") {
			t.Errorf("Load %+v, want overloaded with slots skipped at the limit", l)
		}
		if l.Achieved >= l.Demanded || l.Demanded != 201 {
			t.Errorf("achieved %.0f/s of %.0f/s demanded, want fewer than the 201/s demanded", l.Achieved, l.Demanded)
		}
		if f.maxInFlight > 50 {
			t.Errorf("%d probes in flight, want at most 50", f.maxInFlight)
		}
		if d := downs.any(); len(d) > 0 {
			t.Errorf("healthy backends marked down by the director's own overload: %v", d)
		}
		if r := s.Snapshot()[canary.Key()]; r.State != Up {
			t.Errorf("canary %+v, want up", r)
		}

		s.Update([]Target{canary})
		time.Sleep(3 * time.Second)
		synctest.Wait()
		if l := s.Load(); l.Overloaded {
			t.Errorf("Load %+v after the load went away, want keeping up", l)
		}
	})
}

// TestSchedulerStallStretchesIntervals: a 1.5 s stall of the director (here
// its clock jumps, so every start comes late) makes it probe less often,
// says so, marks nothing down, and returns to the configured intervals once
// it keeps up again.
func TestSchedulerStallStretchesIntervals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var skew atomic.Int64
		f := newFake(nil)
		s := newTestScheduler(f, Options{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
		var targets []Target
		for i := range 10 {
			targets = append(targets, tcpTarget(uint16(1000+i), time.Second))
		}
		s.Update(targets)
		stop := startScheduler(t, s)
		defer stop()
		downs := watchDowns(t, s)
		time.Sleep(3 * time.Second)
		skew.Store(int64(1500 * time.Millisecond))
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		l := s.Load()
		if !l.Overloaded || l.Stretch < 2 || !strings.Contains(l.Reason, "started late") {
			t.Fatalf("Load %+v after a stall, want overloaded, intervals stretched, probes started late", l)
		}
		before := f.count(ap(targets[0]))
		time.Sleep(4 * time.Second)
		if n := f.count(ap(targets[0])) - before; n > 3 {
			t.Errorf("%d probes in 4 s while stretched x%.0f, want at most 3", n, l.Stretch)
		}
		time.Sleep(20 * time.Second)
		synctest.Wait()
		if l := s.Load(); l.Overloaded || l.Stretch != 1 {
			t.Errorf("Load %+v 20 s after the stall, want keeping up at the configured intervals", l)
		}
		before = f.count(ap(targets[0]))
		time.Sleep(5 * time.Second)
		if n := f.count(ap(targets[0])) - before; n < 4 {
			t.Errorf("%d probes in 5 s after recovery, want the configured one per second", n)
		}
		if d := downs.any(); len(d) > 0 {
			t.Errorf("targets marked down by the stall: %v", d)
		}
	})
}

// TestSchedulerDiscardsLateTimeouts: a probe that notices its timeout long
// after the deadline (its goroutine did not run in time) is discarded, not
// counted against a healthy backend; a backend that times out on time goes
// down as before.
func TestSchedulerDiscardsLateTimeouts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var stalled atomic.Bool
		f := newFake(func(ctx context.Context, tg Target) error {
			switch {
			case tg.Port == 2: // dead: times out, noticed on time
				<-ctx.Done()
				return ctx.Err()
			case stalled.Load(): // healthy, but the director is too slow to see it
				time.Sleep(tg.Spec.Timeout + 400*time.Millisecond)
				return ctx.Err()
			}
			return nil
		})
		s := newTestScheduler(f, Options{})
		healthy, dead := tcpTarget(1, time.Second), tcpTarget(2, time.Second)
		s.Update([]Target{healthy, dead})
		stop := startScheduler(t, s)
		defer stop()
		time.Sleep(1500 * time.Millisecond)
		stalled.Store(true)
		time.Sleep(3 * time.Second)
		synctest.Wait()
		snap := s.Snapshot()
		if r := snap[healthy.Key()]; r.State != Up {
			t.Errorf("healthy backend %+v, want still up: its timeouts were the director's", r)
		}
		if r := snap[dead.Key()]; r.State != Down || !strings.Contains(r.LastError, "timeout after 500ms") {
			t.Errorf("dead backend %+v, want down after a timeout", r)
		}
		if l := s.Load(); l.Discarded == 0 || !strings.Contains(l.Reason, "discarded") {
			t.Errorf("Load %+v, want discarded results reported", l)
		}
	})
}
