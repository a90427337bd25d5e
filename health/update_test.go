package health

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// drainTokens counts and empties the Changes channel.
func drainTokens(s *Scheduler) int {
	n := 0
	for {
		select {
		case <-s.Changes():
			n++
		default:
			return n
		}
	}
}

// failingFake passes probes until failing is set.
func failingFake(failing *atomic.Bool) *fakeChecker {
	return newFake(func(context.Context, Target) error {
		if failing.Load() {
			return errors.New("refused")
		}
		return nil
	})
}

// TestSchedulerTimingChangeKeepsVerdict is issue 10's reproduction at the
// scheduler: a healthy target whose rise (and interval, timeout, fall)
// changes stays up with its Since, publishes no change, and probes at the
// new interval from its next probe.
func TestSchedulerTimingChangeKeepsVerdict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(nil)
		s := newTestScheduler(f, Options{})
		a := tcpTarget(80, time.Second)
		a.Spec.Rise, a.Spec.Fall = 3, 2
		s.Update([]Target{a})
		stop := startScheduler(t, s)
		defer stop()
		time.Sleep(3500 * time.Millisecond)
		synctest.Wait()
		before := s.Snapshot()[a.Key()]
		if before.State != Up {
			t.Fatalf("after 3.5 intervals: %+v, want up", before)
		}
		drainTokens(s)

		b := a
		b.Spec.Rise, b.Spec.Fall = 4, 3
		b.Spec.Interval, b.Spec.Timeout = 2*time.Second, 900*time.Millisecond
		s.Update([]Target{b})
		got := s.Snapshot()[b.Key()]
		if got.State != Up || !got.Since.Equal(before.Since) || got.Probes != before.Probes {
			t.Fatalf("right after the timing change: %+v; want the verdict carried: up since %v after %d probes",
				got, before.Since, before.Probes)
		}
		if _, ok := s.Snapshot()[a.Key()]; ok {
			t.Errorf("the old timing's target is still in the snapshot")
		}
		n := f.count(ap(b))
		time.Sleep(6 * time.Second)
		synctest.Wait()
		if tokens := drainTokens(s); tokens != 0 {
			t.Errorf("%d change tokens after a timing-only change, want 0", tokens)
		}
		after := s.Snapshot()[b.Key()]
		if after.State != Up || !after.Since.Equal(before.Since) {
			t.Errorf("after the change: %+v, want still up since %v", after, before.Since)
		}
		if probes := f.count(ap(b)) - n; probes != 3 {
			t.Errorf("%d probes in 6 s after the change, want 3 at the new 2 s interval", probes)
		}
	})
}

// TestSchedulerProbeChangeStartsOver: changing what is probed (here the HTTP
// path) is a new check: no verdict until it probes.
func TestSchedulerProbeChangeStartsOver(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(nil)
		s := newTestScheduler(f, Options{})
		a := tcpTarget(80, time.Second)
		s.Update([]Target{a})
		stop := startScheduler(t, s)
		defer stop()
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()
		if st := s.Snapshot()[a.Key()].State; st != Up {
			t.Fatalf("state %s, want up", st)
		}
		b := a
		b.Spec.ExpectBody = "ok"
		s.Update([]Target{b})
		if got := s.Snapshot()[b.Key()]; got.State != Unknown || got.Probes != 0 {
			t.Errorf("after changing what is probed: %+v, want unknown with no probes", got)
		}
	})
}

// TestSchedulerSameProbeTwoTimings: two services probing one backend with
// different timings run two probes with their own rise and fall; a second
// timing added later starts from the first one's verdict, and removing one
// leaves the other untouched.
func TestSchedulerSameProbeTwoTimings(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failing atomic.Bool
		f := failingFake(&failing)
		s := newTestScheduler(f, Options{})
		fast := tcpTarget(80, time.Second)
		fast.Spec.Rise, fast.Spec.Fall = 1, 1
		s.Update([]Target{fast})
		stop := startScheduler(t, s)
		defer stop()
		time.Sleep(1500 * time.Millisecond)
		synctest.Wait()

		slow := fast
		slow.Spec.Interval, slow.Spec.Fall = 3*time.Second, 2
		s.Update([]Target{fast, slow})
		if got := s.Snapshot()[slow.Key()]; got.State != Up {
			t.Fatalf("second timing of a healthy probe: %+v, want up carried from the first", got)
		}
		failing.Store(true)
		time.Sleep(1100 * time.Millisecond)
		synctest.Wait()
		snap := s.Snapshot()
		if snap[fast.Key()].State != Down || snap[slow.Key()].State != Up {
			t.Errorf("one failed probe each: fast %s, slow %s; want fast down (fall 1), slow up (fall 2)",
				snap[fast.Key()].State, snap[slow.Key()].State)
		}
		s.Update([]Target{slow})
		if got := s.Snapshot()[slow.Key()]; got.State != Up || len(s.Snapshot()) != 1 {
			t.Errorf("after removing the fast timing: %+v (%d targets), want slow unchanged", got, len(s.Snapshot()))
		}
	})
}

// TestSchedulerRetuneAppliesFromNextProbe: a target falling 1/3 whose fall
// becomes 2 goes down at its next failure, not at the reload.
func TestSchedulerRetuneAppliesFromNextProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var failing atomic.Bool
		f := failingFake(&failing)
		s := newTestScheduler(f, Options{})
		a := tcpTarget(80, time.Second)
		a.Spec.Rise, a.Spec.Fall = 1, 3
		s.Update([]Target{a})
		stop := startScheduler(t, s)
		defer stop()
		time.Sleep(1500 * time.Millisecond)
		failing.Store(true)
		time.Sleep(time.Second)
		synctest.Wait()
		if r := s.Snapshot()[a.Key()]; r.State != Up || r.Reason[:12] != "falling 1/3:" {
			t.Fatalf("after one failure: %+v, want up, falling 1/3", r)
		}
		b := a
		b.Spec.Fall = 1
		s.Update([]Target{b})
		if r := s.Snapshot()[b.Key()]; r.State != Up {
			t.Fatalf("right after retuning fall to 1: %s, want still up until the next probe", r.State)
		}
		time.Sleep(time.Second)
		synctest.Wait()
		if r := s.Snapshot()[b.Key()]; r.State != Down {
			t.Errorf("after the next failure: %s, want down", r.State)
		}
	})
}
