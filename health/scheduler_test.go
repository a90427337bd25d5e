package health

import (
	"context"
	"errors"
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/health/check"
)

// fakeChecker records every probe and answers with behave (nil: pass at once).
type fakeChecker struct {
	behave func(ctx context.Context, t Target) error

	mu          sync.Mutex
	starts      map[netip.AddrPort][]time.Time
	ctxErrs     map[netip.AddrPort][]error // ctx.Err() seen when each probe returned
	inFlight    int
	maxInFlight int
	perTarget   map[netip.AddrPort]int // in flight per target
	overlaps    int
}

func newFake(behave func(ctx context.Context, t Target) error) *fakeChecker {
	return &fakeChecker{behave: behave, starts: map[netip.AddrPort][]time.Time{},
		ctxErrs: map[netip.AddrPort][]error{}, perTarget: map[netip.AddrPort]int{}}
}

func (f *fakeChecker) Check(ctx context.Context, t Target) error {
	ap := netip.AddrPortFrom(t.Addr, t.Port)
	f.mu.Lock()
	f.starts[ap] = append(f.starts[ap], time.Now())
	f.inFlight++
	f.maxInFlight = max(f.maxInFlight, f.inFlight)
	f.perTarget[ap]++
	if f.perTarget[ap] > 1 {
		f.overlaps++
	}
	f.mu.Unlock()
	var err error
	if f.behave != nil {
		err = f.behave(ctx, t)
	}
	f.mu.Lock()
	f.inFlight--
	f.perTarget[ap]--
	f.ctxErrs[ap] = append(f.ctxErrs[ap], ctx.Err())
	f.mu.Unlock()
	return err
}

func (f *fakeChecker) count(ap netip.AddrPort) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.starts[ap])
}

func (f *fakeChecker) startTimes(ap netip.AddrPort) []time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Time(nil), f.starts[ap]...)
}

// tcpTarget is a TCP target on 10.0.0.1 (never dialled: checkers are fakes).
func tcpTarget(port uint16, interval time.Duration) Target {
	return Target{Addr: netip.MustParseAddr("10.0.0.1"), Port: port,
		Spec: check.Spec{Type: check.TCP, Interval: interval, Timeout: interval / 2, Rise: 1, Fall: 1}}
}

func ap(t Target) netip.AddrPort { return netip.AddrPortFrom(t.Addr, t.Port) }

// startScheduler runs s in the bubble until the test function returns.
func startScheduler(t *testing.T, s *Scheduler) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run returned %v, want nil after cancel", err)
		}
	}
}

func newTestScheduler(f Checker, opts Options) *Scheduler {
	opts.Checkers = map[check.Type]Checker{check.TCP: f}
	if opts.Coalesce == 0 {
		opts.Coalesce = -1 // exact start times; TestSchedulerCoalesces covers batching
	}
	if opts.Rand == nil {
		opts.Rand = rand.New(rand.NewPCG(1, 2))
	}
	return NewScheduler(nil, opts)
}

func TestSchedulerDedup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(nil)
		s := newTestScheduler(f, Options{})
		a, b := tcpTarget(80, time.Second), tcpTarget(81, time.Second)
		s.Update([]Target{a, b, a, {Addr: a.Addr, Port: a.Port, Spec: a.Spec.Clone()}})
		stop := startScheduler(t, s)
		time.Sleep(3 * time.Second)
		stop()
		got := map[netip.AddrPort]int{ap(a): f.count(ap(a)), ap(b): f.count(ap(b))}
		want := map[netip.AddrPort]int{ap(a): 3, ap(b): 3}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("probes per target in 3 intervals (-want +got):\n%s", diff)
		}
		if n := len(s.Snapshot()); n != 2 {
			t.Errorf("snapshot has %d targets, want 2", n)
		}
	})
}

func TestSchedulerSpreadsFirstProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(nil)
		s := newTestScheduler(f, Options{})
		const n = 200
		var targets []Target
		for i := range n {
			targets = append(targets, tcpTarget(uint16(1000+i), time.Second))
		}
		start := time.Now()
		s.Update(targets)
		stop := startScheduler(t, s)
		time.Sleep(time.Second - time.Nanosecond)
		synctest.Wait()
		stop()

		// Stratified offsets: every 100 ms window of the first interval holds
		// exactly n/10 first probes, none at the start instant.
		buckets := firstProbesPerWindow(t, f, targets, start)
		want := []int{20, 20, 20, 20, 20, 20, 20, 20, 20, 20}
		if diff := cmp.Diff(want, buckets); diff != "" {
			t.Errorf("first probes per 100ms window (-want +got):\n%s", diff)
		}
	})
}

// firstProbesPerWindow counts the targets' probes per 100 ms window of the
// second after from, failing unless each target was probed exactly once.
func firstProbesPerWindow(t *testing.T, f *fakeChecker, targets []Target, from time.Time) []int {
	t.Helper()
	buckets := make([]int, 10)
	for _, tg := range targets {
		st := f.startTimes(ap(tg))
		if len(st) != 1 {
			t.Fatalf("%s probed %d times in the first interval, want 1", ap(tg), len(st))
		}
		buckets[st[0].Sub(from)/(100*time.Millisecond)]++
	}
	return buckets
}

func TestSchedulerOffsetsAreRandom(t *testing.T) {
	// Different seeds give different orders; the same seed the same order.
	firstProbes := func(seed uint64) []time.Duration {
		var out []time.Duration
		synctest.Test(t, func(t *testing.T) {
			f := newFake(nil)
			s := newTestScheduler(f, Options{Rand: rand.New(rand.NewPCG(seed, seed))})
			var targets []Target
			for i := range 20 {
				targets = append(targets, tcpTarget(uint16(1000+i), time.Second))
			}
			start := time.Now()
			s.Update(targets)
			stop := startScheduler(t, s)
			time.Sleep(time.Second - time.Nanosecond)
			synctest.Wait()
			stop()
			for _, tg := range targets {
				out = append(out, f.startTimes(ap(tg))[0].Sub(start))
			}
		})
		return out
	}
	a, b, a2 := firstProbes(1), firstProbes(2), firstProbes(1)
	if cmp.Equal(a, b) {
		t.Errorf("seeds 1 and 2 gave the same first-probe offsets %v", a)
	}
	if diff := cmp.Diff(a, a2); diff != "" {
		t.Errorf("same seed, different offsets (-first +second):\n%s", diff)
	}
}

func TestSchedulerKeepsCadence(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Probes take a varying time; starts must stay on offset + k*interval.
		var calls int
		f := newFake(func(ctx context.Context, _ Target) error {
			calls++
			time.Sleep(time.Duration(calls%4) * 70 * time.Millisecond)
			return nil
		})
		s := newTestScheduler(f, Options{})
		tg := tcpTarget(80, time.Second)
		tg.Spec.Timeout = 900 * time.Millisecond
		s.Update([]Target{tg})
		stop := startScheduler(t, s)
		time.Sleep(10 * time.Second)
		stop()
		st := f.startTimes(ap(tg))
		if len(st) != 10 {
			t.Fatalf("got %d probes in 10 intervals, want 10", len(st))
		}
		var gaps []time.Duration
		for i := 1; i < len(st); i++ {
			gaps = append(gaps, st[i].Sub(st[i-1]))
		}
		want := []time.Duration{time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second, time.Second}
		if diff := cmp.Diff(want, gaps); diff != "" {
			t.Errorf("gaps between probe starts (-want +got):\n%s", diff)
		}
	})
}

func TestSchedulerChangesCoalesce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		healthy := true
		f := newFake(func(context.Context, Target) error {
			mu.Lock()
			defer mu.Unlock()
			if healthy {
				return nil
			}
			return errors.New("down")
		})
		s := newTestScheduler(f, Options{})
		var targets []Target
		for i := range 50 {
			targets = append(targets, tcpTarget(uint16(1000+i), time.Second))
		}
		s.Update(targets)
		stop := startScheduler(t, s)
		defer stop()

		tokens := func() int { return drainTokens(s) }
		// First verdicts: 50 changes, one token.
		time.Sleep(time.Second)
		synctest.Wait()
		if got := tokens(); got != 1 {
			t.Errorf("tokens after 50 first verdicts = %d, want 1", got)
		}
		for k, r := range s.Snapshot() {
			if r.State != Up {
				t.Fatalf("%s state %s after first passing probe with rise 1, want up", k, r.State)
			}
		}
		// Steady probes change nothing: no token.
		time.Sleep(2 * time.Second)
		synctest.Wait()
		if got := tokens(); got != 0 {
			t.Errorf("tokens while nothing changed = %d, want 0", got)
		}
		// All go down within one interval: one token again.
		mu.Lock()
		healthy = false
		mu.Unlock()
		time.Sleep(time.Second)
		synctest.Wait()
		if got := tokens(); got != 1 {
			t.Errorf("tokens after 50 targets went down = %d, want 1", got)
		}
		for k, r := range s.Snapshot() {
			if r.State != Down {
				t.Errorf("%s state %s, want down", k, r.State)
			}
		}
	})
}

func TestSchedulerRemovalStopsProbing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// b's probes block until cancelled, so removal must cancel one in flight.
		b := tcpTarget(81, time.Second)
		b.Spec.Timeout = 900 * time.Millisecond
		f := newFake(func(ctx context.Context, t Target) error {
			if t.Port == b.Port {
				<-ctx.Done()
				return ctx.Err()
			}
			return nil
		})
		s := newTestScheduler(f, Options{})
		a := tcpTarget(80, time.Second)
		s.Update([]Target{a, b})
		stop := startScheduler(t, s)
		defer stop()

		// Run until b's probe is in flight.
		for f.count(ap(b)) == 0 {
			time.Sleep(10 * time.Millisecond)
		}
		synctest.Wait()
		s.Update([]Target{a})
		synctest.Wait()
		f.mu.Lock()
		errs := append([]error(nil), f.ctxErrs[ap(b)]...)
		f.mu.Unlock()
		if diff := cmp.Diff([]error{context.Canceled}, errs, cmpErrors); diff != "" {
			t.Errorf("in-flight probe of removed target: ctx errors (-want +got):\n%s", diff)
		}
		probesB, probesA := f.count(ap(b)), f.count(ap(a))
		time.Sleep(5 * time.Second)
		if got := f.count(ap(b)); got != probesB {
			t.Errorf("removed target probed %d more times", got-probesB)
		}
		if got := f.count(ap(a)); got < probesA+5 {
			t.Errorf("remaining target probed %d times in 5 intervals, want 5", got-probesA)
		}
		if _, ok := s.Snapshot()[b.Key()]; ok {
			t.Error("removed target still in snapshot")
		}
		if _, ok := s.Snapshot()[a.Key()]; !ok {
			t.Error("kept target missing from snapshot")
		}
	})
}

var cmpErrors = cmp.Comparer(func(x, y error) bool { return errors.Is(x, y) || errors.Is(y, x) })

func TestSchedulerUpdateKeepsStateAndSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(nil)
		s := newTestScheduler(f, Options{})
		a := tcpTarget(80, time.Second)
		a.Spec.Rise = 2
		a.Spec.Command = []string{"unused"} // a slice field, to prove Update deep-copies
		s.Update([]Target{a})
		stop := startScheduler(t, s)
		defer stop()
		time.Sleep(2500 * time.Millisecond)
		synctest.Wait()
		before := s.Snapshot()[a.Key()]
		if before.State != Up || before.Probes < 2 {
			t.Fatalf("after 2.5 intervals: %+v, want up after 2 probes", before)
		}
		phase := f.startTimes(ap(a))[0].Sub(time.Time{}) % time.Second

		// The same set again, as fresh values: nothing restarts.
		same := a
		same.Spec.Command = []string{"unused"}
		s.Update([]Target{same})
		a.Spec.Command[0] = "mutated by caller" // must not reach the scheduler's copy
		time.Sleep(3 * time.Second)
		synctest.Wait()
		after := s.Snapshot()[same.Key()]
		if after.State != Up || !after.Since.Equal(before.Since) || after.Probes != before.Probes+3 {
			t.Errorf("after Update with the same set: %+v; want state up, since %v, probes %d", after, before.Since, before.Probes+3)
		}
		for _, st := range f.startTimes(ap(a)) {
			if got := st.Sub(time.Time{}) % time.Second; got != phase {
				t.Errorf("probe at phase %v, want %v: Update moved the schedule", got, phase)
			}
		}
	})
}

func TestSchedulerDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// The checker ignores time and waits for its context: the scheduler's
		// deadline must end it. Timeout > interval also tests no overlap.
		f := newFake(func(ctx context.Context, _ Target) error {
			<-ctx.Done()
			return ctx.Err()
		})
		var hooks []string
		s := newTestScheduler(f, Options{OnProbe: func(t Target, ok bool, latency time.Duration, err error) {
			hooks = append(hooks, fmtProbe(ok, latency, err))
		}})
		tg := tcpTarget(80, 100*time.Millisecond)
		tg.Spec.Timeout = 250 * time.Millisecond
		tg.Spec.Fall = 1
		s.Update([]Target{tg})
		start := time.Now()
		stop := startScheduler(t, s)
		time.Sleep(time.Second)
		synctest.Wait()
		stop()
		r := s.Snapshot()[tg.Key()]
		if r.State != Down || r.LastError != "timeout after 250ms" || r.Latency != 250*time.Millisecond {
			t.Errorf("result %+v, want down, last error \"timeout after 250ms\", latency 250ms", r)
		}
		if r.Reason != "probe failed: timeout after 250ms" {
			t.Errorf("reason %q", r.Reason)
		}
		if f.overlaps != 0 {
			t.Errorf("%d overlapping probes of one target", f.overlaps)
		}
		// Starts sit on the 100 ms grid, every third slot (the probe holds two).
		st := f.startTimes(ap(tg))
		for i := 1; i < len(st); i++ {
			if gap := st[i].Sub(st[i-1]); gap != 300*time.Millisecond {
				t.Errorf("gap %d = %v, want 300ms (skip slots while a probe runs)", i, gap)
			}
		}
		if len(st) < 3 || st[0].Sub(start) >= 100*time.Millisecond {
			t.Errorf("starts %v", st)
		}
		for i, h := range hooks {
			if h != "fail 250ms timeout after 250ms" {
				t.Errorf("OnProbe call %d = %q, want \"fail 250ms timeout after 250ms\"", i, h)
			}
		}
		if len(hooks) != int(r.Probes) {
			t.Errorf("OnProbe called %d times for %d recorded probes", len(hooks), r.Probes)
		}
	})
}

func fmtProbe(ok bool, latency time.Duration, err error) string {
	s := "ok "
	if !ok {
		s = "fail "
	}
	s += latency.String()
	if err != nil {
		s += " " + err.Error()
	}
	return s
}

func TestSchedulerConcurrencyBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(func(ctx context.Context, _ Target) error {
			time.Sleep(300 * time.Millisecond)
			return nil
		})
		s := newTestScheduler(f, Options{Concurrency: 3})
		var targets []Target
		for i := range 20 {
			targets = append(targets, tcpTarget(uint16(1000+i), time.Second))
		}
		s.Update(targets)
		stop := startScheduler(t, s)
		time.Sleep(3 * time.Second)
		stop()
		if f.maxInFlight != 3 {
			t.Errorf("max probes in flight = %d, want 3 (the Concurrency bound, reached)", f.maxInFlight)
		}
		if f.overlaps != 0 {
			t.Errorf("%d overlapping probes of one target", f.overlaps)
		}
	})
}

func TestSchedulerUpdateBeforeRunKeepsSpread(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(nil)
		s := newTestScheduler(f, Options{})
		var targets []Target
		for i := range 100 {
			targets = append(targets, tcpTarget(uint16(1000+i), time.Second))
		}
		s.Update(targets)
		// Targets wait 5.5 intervals for Run: their first starts have passed.
		time.Sleep(5500 * time.Millisecond)
		runStart := time.Now()
		stop := startScheduler(t, s)
		time.Sleep(time.Second - time.Nanosecond)
		synctest.Wait()
		stop()
		buckets := firstProbesPerWindow(t, f, targets, runStart)
		want := []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 10}
		if diff := cmp.Diff(want, buckets); diff != "" {
			t.Errorf("first probes per 100ms window after a late Run (-want +got):\n%s", diff)
		}
	})
}

func TestSchedulerSnapshot(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(func(context.Context, Target) error {
			time.Sleep(3 * time.Millisecond)
			return errors.New("connect 10.0.0.1:80: connection refused")
		})
		s := newTestScheduler(f, Options{})
		tg := tcpTarget(80, time.Second)
		tg.Spec.Fall = 2
		added := time.Now()
		s.Update([]Target{tg})
		first := s.Snapshot()
		want := Snapshot{tg.Key(): {State: Unknown, Reason: "waiting for first probe", Since: added}}
		if diff := cmp.Diff(want, first); diff != "" {
			t.Errorf("snapshot before any probe (-want +got):\n%s", diff)
		}
		stop := startScheduler(t, s)
		time.Sleep(2 * time.Second)
		synctest.Wait()
		stop()
		got := s.Snapshot()[tg.Key()]
		lastStart := f.startTimes(ap(tg))[1]
		firstEnd := f.startTimes(ap(tg))[0].Add(3 * time.Millisecond)
		wantR := Result{
			State:     Down,
			Reason:    "probe failed: connect 10.0.0.1:80: connection refused",
			LastError: "connect 10.0.0.1:80: connection refused",
			Latency:   3 * time.Millisecond,
			Since:     firstEnd,
			LastProbe: lastStart.Add(3 * time.Millisecond),
			Probes:    2,
		}
		if diff := cmp.Diff(wantR, got); diff != "" {
			t.Errorf("result after two failed probes (-want +got):\n%s", diff)
		}
		// Earlier snapshots are immutable copies.
		if diff := cmp.Diff(want, first); diff != "" {
			t.Errorf("earlier snapshot changed (-want +got):\n%s", diff)
		}
		// Without changes, the same map is returned (no rebuild).
		a, b := s.Snapshot(), s.Snapshot()
		a[tg.Key()] = Result{} // callers must not, but prove a and b share storage
		if b[tg.Key()] != (Result{}) {
			t.Error("Snapshot rebuilt the map although nothing changed")
		}
	})
}

func TestSchedulerUnknownType(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTestScheduler(newFake(nil), Options{})
		tg := tcpTarget(80, time.Second)
		tg.Spec.Type = "smtp"
		s.Update([]Target{tg})
		stop := startScheduler(t, s)
		time.Sleep(time.Second)
		synctest.Wait()
		stop()
		want := `no checker for health check type "smtp"; use tcp, http, https, udp, dns or exec`
		if got := s.Snapshot()[tg.Key()].LastError; got != want {
			t.Errorf("last error %q, want %q", got, want)
		}
	})
}

func TestSchedulerShutdownCancelsProbes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		f := newFake(func(ctx context.Context, _ Target) error {
			<-ctx.Done()
			return ctx.Err()
		})
		hooks := 0
		s := newTestScheduler(f, Options{OnProbe: func(Target, bool, time.Duration, error) { hooks++ }})
		tg := tcpTarget(80, time.Hour)
		tg.Spec.Timeout = time.Hour
		s.Update([]Target{tg})
		stop := startScheduler(t, s)
		for f.count(ap(tg)) == 0 {
			time.Sleep(time.Minute)
		}
		before := time.Now()
		stop() // returns only after the worker finished
		if took := time.Since(before); took != 0 {
			t.Errorf("Run took %v (fake time) to stop, want 0: the probe was not cancelled", took)
		}
		if hooks != 0 || s.Snapshot()[tg.Key()].Probes != 0 {
			t.Errorf("aborted probe was recorded: %d hooks, %d probes", hooks, s.Snapshot()[tg.Key()].Probes)
		}
		// Run may be called again after it returned; a second concurrent Run may not.
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error)
		go func() { done <- s.Run(ctx) }()
		synctest.Wait()
		if err := s.Run(ctx); err == nil {
			t.Error("second concurrent Run returned nil, want an error")
		}
		cancel()
		if err := <-done; err != nil {
			t.Errorf("restarted Run returned %v", err)
		}
	})
}
