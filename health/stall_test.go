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

// TestSchedulerDiscardsTimeoutsDuringAStall: the director's clock jumps
// 60 ms while a healthy backend's first probe runs (the process, or its
// goroutines, did not run: a busy host), and that probe times out because
// the runtime ran its deadline timer before reporting the answer. Noticed
// only 60 ms after the deadline, within the quarter of the timeout that
// still blamed the backend, the timeout marked the healthy backend down.
// It is discarded; a dead backend probed outside the stall still goes
// down, and the healthy one's later probes pass.
func TestSchedulerDiscardsTimeoutsDuringAStall(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var offset atomic.Int64 // how far the director's clock has jumped
		now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		var runs atomic.Int64
		f := newFake(func(ctx context.Context, tg Target) error {
			switch {
			case tg.Port == 2: // dead: silent
				<-ctx.Done()
				return ctx.Err()
			case runs.Add(1) == 1: // healthy, its first probe caught in the stall
				offset.Add(int64(60 * time.Millisecond))
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		var mu sync.Mutex
		var failed []string
		s := newTestScheduler(f, Options{Now: now, OnProbe: func(tg Target, ok bool, _ time.Duration, err error) {
			if !ok && tg.Port == 1 {
				mu.Lock()
				failed = append(failed, err.Error())
				mu.Unlock()
			}
		}})
		healthy, dead := tcpTarget(1, time.Second), tcpTarget(2, time.Second)
		s.Update([]Target{healthy, dead})
		stop := startScheduler(t, s)
		time.Sleep(4 * time.Second)
		stop()

		snap := s.Snapshot()
		if len(failed) > 0 || snap[healthy.Key()].State != Up {
			t.Errorf("healthy backend failed %v, now %+v; want its timeout during the stall discarded and up", failed, snap[healthy.Key()])
		}
		if r := snap[dead.Key()]; r.State != Down || !strings.Contains(r.LastError, "timeout") {
			t.Errorf("dead backend %+v, want down after a timeout", r)
		}
		if l := s.Load(); l.Discarded == 0 {
			t.Errorf("Load %+v, want the timeout during the stall discarded", l)
		}
	})
}

// TestStallWatch: a tick that comes more than stallAfter late is a stall,
// found for any interval it overlaps and for no other; a watch that has
// not ticked for that long is stalled now.
func TestStallWatch(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var offset atomic.Int64
		now := func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		var w stallWatch
		t0 := now()
		if w.stalledDuring(t0.Add(-time.Hour), t0, t0) {
			t.Error("a watch not running reports a stall")
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { w.run(ctx, now); close(done) }()
		time.Sleep(100 * time.Millisecond)
		jumped := now()
		offset.Store(int64(stallAfter + 20*time.Millisecond)) // the next tick comes this late
		time.Sleep(100 * time.Millisecond)
		end := now()
		if !w.stalledDuring(jumped.Add(-time.Millisecond), jumped.Add(time.Millisecond), end) {
			t.Error("stall not found in an interval it overlaps")
		}
		if w.stalledDuring(t0, jumped.Add(-stallTick), end) || w.stalledDuring(end.Add(-50*time.Millisecond), end, end) {
			t.Error("stall found in an interval it does not overlap")
		}
		if !w.stalledDuring(end, end, end.Add(stallTick+stallAfter+time.Millisecond)) {
			t.Error("a watch that has not ticked for longer than stallAfter is not stalled now")
		}
		cancel()
		<-done
	})
}
