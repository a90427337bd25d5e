package health

import (
	"log/slog"
	"math"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

// TestLoadMeterStretchFollowsLateShare: a window with more than a tenth of
// its probes late doubles the stretch (here nothing tells the meter what
// the director can do), the window after such a change holds it; windows with a stray late start (half
// a percent: a collection, a busy host) still relax it, by steps, back to
// 1; windows with a few percent late hold it; and a slot skipped at the
// in-flight limit is never calm. Relaxing only after windows with no late
// start at all kept a director at 10,000 targets at the maximum stretch.
func TestLoadMeterStretchFollowsLateShare(t *testing.T) {
	m := &loadMeter{log: slog.New(slog.DiscardHandler)}
	now := time.Unix(0, 0)
	m.judge(now)
	window := func(started, late, limit uint64) float64 {
		m.started.Add(started)
		m.lateStarts.Add(late)
		m.skip(SkipLimit, limit)
		now = now.Add(loadWindow)
		m.judge(now)
		return m.stretch()
	}
	if got := window(1000, 200, 0); got != 2 {
		t.Fatalf("stretch %v after a window with 20%% late, want 2", got)
	}
	if got := window(1000, 300, 0); got != 2 {
		t.Fatalf("stretch %v after a second slow window, want held at 2: the backlog from before the first change", got)
	}
	if got := window(1000, 300, 0); got != 4 {
		t.Fatalf("stretch %v after a third slow window, want 4", got)
	}
	for i := range 10 {
		if got := window(1000, 50, 0); got != 4 {
			t.Fatalf("stretch %v after %d windows with 5%% late, want held at 4", got, i+1)
		}
	}
	for i := range 6 {
		if got := window(1000, 0, 1); got != 4 {
			t.Fatalf("stretch %v after %d windows with a slot skipped at the limit, want held at 4", got, i+1)
		}
	}
	var seen []float64
	for range 30 {
		if got := window(1000, 5, 0); len(seen) == 0 || got != seen[len(seen)-1] {
			seen = append(seen, got)
		}
	}
	if seen[len(seen)-1] != 1 {
		t.Fatalf("stretch went %v over 30 windows with 0.5%% late, want back to 1", seen)
	}
	for i := 1; i < len(seen); i++ {
		if seen[i] >= seen[i-1] || seen[i] < seen[i-1]/2 {
			t.Fatalf("stretch went %v, want it to relax by steps gentler than halving", seen)
		}
	}
	if l := m.snapshot(); l.Stretch != 1 || !l.Overloaded {
		t.Errorf("Load %+v with stray late starts, want stretch 1 and overload still reported", l)
	}
	if got := window(1000, 0, 0); got != 1 || m.snapshot().Overloaded {
		t.Errorf("after a clean window: stretch %v, overloaded %v; want 1 and keeping up", got, m.snapshot().Overloaded)
	}
}

// TestLoadMeterStretchSettlesAtCapacity: a director that can complete
// 2,000 probes/s of the 5,000 its targets demand settles its stretch near
// 2.5 and keeps most of its capacity busy. A window asking more than the
// capacity is slow, and so is the one after it (the backlog drains). The
// meter used to double at every slow window and relax by half again:
// measured at 10,000 targets under emulation, the stretch swung from 1.4 to
// 5.3 every few seconds and the director kept 0.28 of the demanded rate at
// 70 % of one core.
func TestLoadMeterStretchSettlesAtCapacity(t *testing.T) {
	const demanded, capacity = 5000.0, 2000.0
	var done float64
	var stretches []float64
	atCapacity(demanded, 60, func(int) float64 { return capacity }, func(i int, achieved, stretch float64) {
		stretches = append(stretches, stretch)
		if i >= 20 {
			done += achieved
		}
		if stretch > 1.5*demanded/capacity {
			t.Fatalf("stretch went %v: above 1.5x the %v the capacity needs", stretches, demanded/capacity)
		}
	})
	if kept := done / 40 / capacity; kept < 0.9 {
		t.Errorf("stretch went %v: %.2f of the capacity used in the last 40 windows, want at least 0.9", stretches, kept)
	}
}

// TestLoadMeterStretchSettlesUnderNoisyCapacity: the director's capacity
// measured per window is noisy (here 2,000/s +-40 %, uniform; in the VM at
// 1,000 distinct targets the stretch swung between 1.6 and 5.4 on it). The
// stretch follows a smoothed estimate, not the last window's rate, so after
// the first 30 windows it stays within a band around the 2.75 that the mean
// capacity with headroom needs. Following each window's rate, one slow
// window set the stretch from a low sample (6.07 over these seeds) and a
// calm one forgot the capacity and relaxed to 1.95.
func TestLoadMeterStretchSettlesUnderNoisyCapacity(t *testing.T) {
	const demanded, capacity = 5000.0, 2000.0
	const low, high = 2.0, 4.5 // 0.73 and 1.64 times the 2.75 needed
	for seed := uint64(1); seed <= 20; seed++ {
		rng := rand.New(rand.NewPCG(seed, 7))
		noisy := func(int) float64 { return capacity * (0.6 + 0.8*rng.Float64()) }
		var stretches []float64
		atCapacity(demanded, 120, noisy, func(i int, _, stretch float64) {
			stretches = append(stretches, math.Round(stretch*100)/100)
			if i >= 30 && (stretch < low || stretch > high) {
				t.Fatalf("seed %d, window %d: stretch %v, want within [%v, %v] after 30 windows; went %v",
					seed, i+1, stretch, low, high, stretches[30:])
			}
		})
	}
}

// atCapacity runs a loadMeter for windows windows against a director that
// completes what the stretched demand asks, up to capacity(i) per second
// in window i. A window short of the demand, and the one after it (the
// backlog), has a quarter of its probes late; other windows half a percent
// (calm). seen gets each window's achieved rate and the stretch after it.
func atCapacity(demanded float64, windows int, capacity func(i int) float64, seen func(i int, achieved, stretch float64)) {
	withStalls(demanded, windows, capacity, func(int) bool { return false }, seen)
}

// withStalls is atCapacity with the director stalled in the windows
// stalled picks: it completes a fifth of its capacity and every start in
// the window is late (in the VM at 10,000 distinct targets, the reconcile
// pass programming 1,000 IPVS changes took the emulated CPUs for 0.5-2.3 s).
func withStalls(demanded float64, windows int, capacity func(i int) float64, stalled func(i int) bool, seen func(i int, achieved, stretch float64)) {
	m := &loadMeter{log: slog.New(slog.DiscardHandler)}
	m.demandedMilli.Store(int64(demanded * 1000))
	now := time.Unix(0, 0)
	m.judge(now)
	backlog := false
	for i := range windows {
		can := capacity(i)
		stall := stalled(i)
		if stall {
			can /= 5
		}
		asked := demanded / m.stretch()
		achieved := min(asked, can)
		late := uint64(achieved / 200)
		if asked > can || backlog {
			late = uint64(achieved / 4)
		}
		if stall {
			late = uint64(achieved)
		}
		backlog = asked > can
		m.started.Add(uint64(achieved))
		m.completed.Add(uint64(achieved))
		m.lateStarts.Add(late)
		now = now.Add(loadWindow)
		m.judge(now)
		seen(i, achieved, m.stretch())
	}
}

// TestLoadMeterRidesOutStalls: a director that can do 2,000 probes/s
// (+-20 %) of the 5,000 demanded but stalls for one window in every 7 or
// 10 (every start late, a fifth of its rate) keeps most of its capacity
// busy. A lone slow window after calm ones holds the stretch until the next
// window confirms it; a stall is followed by a backlog window at full rate,
// so the pair measures the director, not the stall. Taking every slow
// window's rate as the capacity ratcheted the stretch to its maximum 8 and
// kept 0.33-0.38 of the capacity here; in the VM at 10,000 distinct
// targets, 0.19 of the demanded rate at half a core. A stall that lasts
// two windows is believed: the stretch rises (by the smoothed capacity:
// 30 % of the way to the stalled rate).
func TestLoadMeterRidesOutStalls(t *testing.T) {
	const demanded, capacity = 5000.0, 2000.0
	for _, period := range []int{7, 10} {
		for seed := uint64(1); seed <= 20; seed++ {
			rng := rand.New(rand.NewPCG(seed, 11))
			noisy := func(int) float64 { return capacity * (0.8 + 0.4*rng.Float64()) }
			var done float64
			var stretches []float64
			withStalls(demanded, 120, noisy, func(i int) bool { return i%period == period/2 }, func(i int, achieved, stretch float64) {
				stretches = append(stretches, math.Round(stretch*100)/100)
				if i >= 20 {
					done += achieved
				}
			})
			if kept := done / 100 / capacity; kept < 0.65 {
				t.Fatalf("stall every %d windows, seed %d: %.2f of the capacity kept, want at least 0.65; stretch went %v",
					period, seed, kept, stretches[20:])
			}
		}
	}
	var stretches []float64
	withStalls(demanded, 40, func(int) float64 { return capacity }, func(i int) bool { return i == 20 || i == 21 },
		func(_ int, _, stretch float64) { stretches = append(stretches, stretch) })
	if before, after := stretches[19], slices.Max(stretches[20:]); after < 1.1*before {
		t.Errorf("stretch %v before a stall of two windows and at most %v after it, want raised; went %v", before, after, stretches)
	}
}

// TestLoadMeterHoldsAfterARaise: the window right after a raise holds the
// stretch, whatever its rate: it still drains the backlog from before the
// change. Raising on it too sent the stretch from 3.6 to 8 in two windows
// in the VM under a busy host.
func TestLoadMeterHoldsAfterARaise(t *testing.T) {
	m := &loadMeter{log: slog.New(slog.DiscardHandler)}
	m.demandedMilli.Store(5000 * 1000)
	now := time.Unix(0, 0)
	m.judge(now)
	window := func(achieved uint64) float64 {
		m.started.Add(achieved)
		m.completed.Add(achieved)
		m.lateStarts.Add(achieved / 4)
		now = now.Add(loadWindow)
		m.judge(now)
		return m.stretch()
	}
	if got := window(2000); got != 2 {
		t.Fatalf("stretch %v after a window short of the demand, want 2 (at most doubling)", got)
	}
	if got := window(1000); got != 2 {
		t.Fatalf("stretch %v in the window after a raise, want held at 2", got)
	}
	// The capacity estimate moves from 2,000/s by a share capacityWeight
	// towards the 1,000/s measured (1,700/s): one slow window does not
	// set it alone.
	want := 5000 / (2000 + capacityWeight*(1000-2000)) * headroom
	if got := window(1000); math.Abs(got-want) > 1e-9 {
		t.Fatalf("stretch %v after a second window short of the demand, want %.3f", got, want)
	}
	// Afresh: 2,000/s measured at stretch 2 gives 2.75; two windows later,
	// late but above the stretched demand (1,818/s), the backlog still
	// drains and 2.75 already fits the capacity: held, not doubled (3.9 to
	// 7.7 in the VM).
	m = &loadMeter{log: slog.New(slog.DiscardHandler)}
	m.demandedMilli.Store(5000 * 1000)
	m.judge(now)
	for i, want := range []float64{2, 2, 2.75, 2.75, 2.75} {
		if got := window(2000 + 250*uint64(i/4)); got != want {
			t.Fatalf("window %d: stretch %v, want %v", i+1, got, want)
		}
	}
}

// TestSchedulerOverloadThinsEvenly: after a stall, an overloaded scheduler
// probes fewer slots, and the probes that remain stay spread over the
// interval as all of them were. Stretching the interval itself moved every
// target taken during the stall to the same part of the longer interval:
// whole seconds with nothing due, then a burst that overloaded the
// director again (seen at 10,000 targets under emulation).
func TestSchedulerOverloadThinsEvenly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 1000
		s, f, targets, stop := stalledScheduler(t, n)
		defer stop()
		from := time.Now()
		stretch := steadyStretch(t, s, 2*time.Second)
		buckets := make([]int, 20)
		total := 0
		for _, tg := range targets {
			for _, at := range f.startTimes(ap(tg)) {
				if d := at.Sub(from); d >= 0 && d < 2*time.Second {
					buckets[d/(100*time.Millisecond)]++
					total++
				}
			}
		}
		want := float64(2*n) / stretch // probes in 2 s at the stretched rate
		if float64(total) < 0.8*want || float64(total) > 1.2*want {
			t.Errorf("%d probes in 2 s at stretch %v, want about %.0f", total, stretch, want)
		}
		mean := float64(total) / float64(len(buckets))
		for i, c := range buckets {
			if float64(c) < 0.5*mean || float64(c) > 1.5*mean {
				t.Errorf("probes per 100 ms while overloaded: %v (bucket %d off the mean %.0f by more than half)", buckets, i, mean)
				break
			}
		}
	})
}

// stalledScheduler runs n targets probed every second, stalls the
// dispatcher's clock by 1.5 s after 3 s and returns once the scheduler has
// stretched its intervals (at least x2). It runs inside a synctest bubble.
func stalledScheduler(t *testing.T, n int) (*Scheduler, *fakeChecker, []Target, func()) {
	t.Helper()
	var targets []Target
	for i := range n {
		targets = append(targets, tcpTarget(uint16(1000+i), time.Second))
	}
	f := newFake(nil)
	s, stop := stalledWith(t, f, targets)
	return s, f, targets, stop
}

// stalledWith is stalledScheduler for the given checker and targets.
func stalledWith(t *testing.T, f Checker, targets []Target) (*Scheduler, func()) {
	t.Helper()
	var skew atomic.Int64
	s := newTestScheduler(f, Options{Now: func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }})
	s.Update(targets)
	stop := startScheduler(t, s)
	time.Sleep(3 * time.Second)
	skew.Store(int64(1500 * time.Millisecond))
	time.Sleep(1100 * time.Millisecond)
	synctest.Wait()
	if stretch := s.Load().Stretch; stretch < 2 {
		stop()
		t.Fatalf("stretch %v after a stall, want at least 2", stretch)
	}
	return s, stop
}

// TestSchedulerOverloadQueuesOnlyProbedSlots: while stretched, a target
// waits in the queue at the slot it will probe, not at every slot it skips.
// Popping and requeueing each target at every slot only to skip it was
// most of the scheduler's queue work at a stretch of 4 (10,000 targets
// under emulation), in the time the director had least of.
func TestSchedulerOverloadQueuesOnlyProbedSlots(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 1000
		s, _, _, stop := stalledScheduler(t, n)
		defer stop()
		stretch := steadyStretch(t, s, 2*time.Second)
		s.mu.Lock()
		defer s.mu.Unlock()
		skipping := 0
		for _, e := range s.entries {
			if e.dispatched && e.credit+1/stretch < 1-1e-9 {
				skipping++
			}
		}
		if skipping > 0 {
			t.Errorf("%d of %d targets queued at a slot they will skip at stretch %v, want none", skipping, n, stretch)
		}
	})
}

// steadyStretch lets s run for d and returns its stretch, which the caller
// needs to have held for all of d.
func steadyStretch(t *testing.T, s *Scheduler, d time.Duration) float64 {
	t.Helper()
	stretch := s.Load().Stretch
	time.Sleep(d)
	synctest.Wait()
	if l := s.Load(); l.Stretch != stretch {
		t.Fatalf("stretch went from %v to %v while measuring; the test needs it steady", stretch, l.Stretch)
	}
	return stretch
}

// TestSchedulerLowerStretchTakesEffectAtOnce: when the stretch comes down,
// the probe rate follows in the next interval. Targets wait in the queue
// at the slot they will probe (skipAhead), up to stretch intervals ahead;
// left there, a lower stretch raised the rate only after those intervals,
// while the load meter judged windows that did not show it yet and relaxed
// further, then met the burst.
func TestSchedulerLowerStretchTakesEffectAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const n = 2000
		f := newFake(nil)
		s := newTestScheduler(f, Options{})
		var targets []Target
		for i := range n {
			targets = append(targets, tcpTarget(uint16(1000+i), time.Second))
		}
		s.Update(targets)
		stop := startScheduler(t, s)
		defer stop()
		time.Sleep(3 * time.Second)
		s.meter.stretchBits.Store(math.Float64bits(8))
		// Every target takes a slot at stretch 8 and parks.
		time.Sleep(1100 * time.Millisecond)
		var lower float64
		for lower = s.Load().Stretch; lower >= 8; lower = s.Load().Stretch {
			time.Sleep(10 * time.Millisecond)
		}
		from := time.Now().Add(100 * time.Millisecond)
		time.Sleep(1200 * time.Millisecond)
		synctest.Wait()
		total := 0
		for _, tg := range targets {
			for _, at := range f.startTimes(ap(tg)) {
				if d := at.Sub(from); d >= 0 && d < time.Second {
					total++
				}
			}
		}
		if got := s.Load().Stretch; got != lower {
			t.Fatalf("stretch went from %v to %v while measuring; the test needs it steady", lower, got)
		}
		want := float64(n) / lower
		if float64(total) < 0.8*want || float64(total) > 1.2*want {
			t.Errorf("%d probes in the second after the stretch went 8 -> %.2f, want about %.0f (at 8: %.0f)", total, lower, want, float64(n)/8)
		}
	})
}

// TestFitKeepsAShareForTransit: the settled targets' stretch leaves room
// for the targets in transition at their own stretch, so together they
// ask what the director can do (with headroom), and those in transition
// get their demand up to a quarter of the capacity; when they are most of
// the demand, every target is thinned alike.
func TestFitKeepsAShareForTransit(t *testing.T) {
	const demanded, capacity = 5000.0, 1400.0
	for _, transit := range []float64{0, 100, 350, 500, 1500, 4000, 5000} {
		s := fit(demanded, transit, capacity, headroom)
		d := transitFor(s, transit, capacity)
		asked := (demanded-transit)/s + transit/d
		if math.Abs(asked-capacity/headroom) > 1e-6 {
			t.Errorf("transit %v: stretches %v (settled) and %v (transit) ask %v probes/s, want %v", transit, s, d, asked, capacity/headroom)
		}
		if d < 1 || d > s {
			t.Errorf("transit %v: transit stretch %v, want between 1 and the settled stretch %v", transit, d, s)
		}
		if got, want := transit/d, min(transit, transitShare*capacity); got < want-1e-6 && d < s {
			t.Errorf("transit %v: targets in transition get %v probes/s, want at least %v", transit, got, want)
		}
	}
	if s, d := fit(demanded, 100, capacity, headroom), transitFor(fit(demanded, 100, capacity, headroom), 100, capacity); d != 1 || s <= demanded/capacity*headroom {
		t.Errorf("100 of %v probes/s in transit: stretches %v and %v, want transit 1 and settled above the uniform %v", demanded, s, d, demanded/capacity*headroom)
	}
	if s := fit(demanded, demanded, capacity, headroom); math.Abs(s-demanded/capacity*headroom) > 1e-9 {
		t.Errorf("every target in transit: stretch %v, want the uniform %v", s, demanded/capacity*headroom)
	}
}

// TestLoadMeterCountsTransitDemand: when many targets fail at once, the
// meter counts their probes (they are thinned less, failing ones not at
// all) and raises the settled stretch to make room. Counting them at the
// settled stretch, it judged the stretch already fitted while every window
// was late (10,000 distinct targets in the VM, one real server of ten
// failed: late share 1 until the verdicts were in).
func TestLoadMeterCountsTransitDemand(t *testing.T) {
	const demanded, capacity, transit = 5000.0, 1400.0, 500.0
	m := &loadMeter{log: slog.New(slog.DiscardHandler), capacity: capacity}
	m.demandedMilli.Store(int64(demanded * 1000))
	m.stretchBits.Store(math.Float64bits(fit(demanded, 0, capacity, headroom)))
	m.transitMilli.Store(int64(transit * 1000))
	now := time.Unix(0, 0)
	m.judge(now)
	for range 2 { // a lone slow window holds; the second is believed
		m.started.Add(capacity)
		m.completed.Add(capacity)
		m.lateStarts.Add(capacity / 2)
		now = now.Add(loadWindow)
		m.judge(now)
	}
	stretch := m.stretch()
	if want := fit(demanded, transit, capacity, headroom); math.Abs(stretch-want) > 1e-9 {
		t.Errorf("stretch %v after two slow windows at capacity with %v of %v probes/s in transit, want %v", stretch, transit, demanded, want)
	}
	if got, want := m.transitStretch(), transit/(transitShare*capacity); math.Abs(got-want) > 1e-9 {
		t.Errorf("transit stretch %v, want %v (the transit demand over a quarter of the capacity)", got, want)
	}
}
