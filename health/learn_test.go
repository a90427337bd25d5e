package health

import (
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/health/check"
)

// TestSchedulerLearnsSoonThenKeepsCadence: with a LearnRate, 1,000 new
// targets at a 2 s interval get their first probe within n/LearnRate (0.5 s,
// evenly), their second between half an interval and an interval and a half
// later, and from then on one probe per interval spread evenly over it, as
// without learning. Exec targets keep their first probes spread over the
// interval. Without a LearnRate the first probes take the whole interval.
func TestSchedulerLearnsSoonThenKeepsCadence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n, iv = 1000, 2 * time.Second
		f := newFake(nil)
		s := newTestScheduler(f, Options{LearnRate: 2000})
		s.checkers[check.Exec] = f
		var targets []Target
		for i := range n {
			targets = append(targets, tcpTarget(uint16(1000+i), iv))
		}
		var execs []Target
		for i := range 20 {
			tg := tcpTarget(uint16(5000+i), iv)
			tg.Spec.Type, tg.Spec.Command = check.Exec, []string{"true"}
			execs = append(execs, tg)
		}
		start := time.Now()
		s.Update(append(targets, execs...))
		stop := startScheduler(t, s)
		time.Sleep(8*time.Second - time.Nanosecond)
		synctest.Wait()
		stop()

		first := make([]int, 10)  // first probes per 50 ms
		steady := make([]int, 10) // probes per 200 ms over [4 s, 6 s)
		for _, tg := range targets {
			st := f.startTimes(ap(tg))
			if len(st) < 4 {
				t.Fatalf("%s probed %d times in 8 s, want at least 4", ap(tg), len(st))
			}
			at := st[0].Sub(start)
			if at >= 500*time.Millisecond {
				t.Fatalf("%s first probed after %s, want within 500ms (1,000 at 2,000/s)", ap(tg), at)
			}
			first[at/(50*time.Millisecond)]++
			if gap := st[1].Sub(st[0]); gap < iv/2 || gap >= iv*3/2 {
				t.Errorf("%s: second probe %s after the first, want within [1s, 3s)", ap(tg), gap)
			}
			for k := 2; k < len(st); k++ {
				if gap := st[k].Sub(st[k-1]); gap != iv {
					t.Errorf("%s: probe %d came %s after the one before, want the 2s cadence", ap(tg), k, gap)
				}
			}
			for _, at := range st {
				if d := at.Sub(start); d >= 4*time.Second && d < 6*time.Second {
					steady[(d-4*time.Second)/(200*time.Millisecond)]++
				}
			}
		}
		want := []int{100, 100, 100, 100, 100, 100, 100, 100, 100, 100}
		if diff := cmp.Diff(want, first); diff != "" {
			t.Errorf("first probes per 50ms (-want +got):\n%s", diff)
		}
		if diff := cmp.Diff(want, steady); diff != "" {
			t.Errorf("probes per 200ms in steady state (-want +got):\n%s", diff)
		}
		late := 0
		for _, tg := range execs {
			st := f.startTimes(ap(tg))
			if len(st) == 0 || st[0].Sub(start) >= iv {
				t.Fatalf("exec %s first probed at %v, want within its interval", ap(tg), st)
			}
			if st[0].Sub(start) >= 500*time.Millisecond {
				late++
			}
		}
		if late < len(execs)/2 {
			t.Errorf("%d of %d exec first probes after 500ms, want them spread over the 2s interval", late, len(execs))
		}
	})
}

// TestSchedulerLearningBurstIsNotOverload: first probes that start late
// (the director takes longer than n/LearnRate for the learning burst, here
// a 600 ms stall during it) do not stretch the intervals: the burst ends by
// itself, and stretching for it left the director probing every other slot
// for seconds after start-up.
func TestSchedulerLearningBurstIsNotOverload(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var skew atomic.Int64
		f := newFake(nil)
		s := newTestScheduler(f, Options{LearnRate: 2000, Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
		var targets []Target
		for i := range 1000 {
			targets = append(targets, tcpTarget(uint16(1000+i), 2*time.Second))
		}
		s.Update(targets)
		stop := startScheduler(t, s)
		defer stop()
		time.Sleep(200 * time.Millisecond)
		skew.Store(int64(600 * time.Millisecond))
		time.Sleep(900 * time.Millisecond)
		synctest.Wait()
		for _, tg := range targets {
			if len(f.startTimes(ap(tg))) == 0 {
				t.Fatalf("%s not probed 1.1 s after start", ap(tg))
			}
		}
		if l := s.Load(); l.Stretch != 1 {
			t.Errorf("Load %+v after a late learning burst, want the intervals unstretched", l)
		}
	})
}
