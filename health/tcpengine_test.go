package health

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anycast-director/director/health/check"
)

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

func TestTCPEngineResults(t *testing.T) {
	// The built-in tcp checker runs in the engine: a live port passes with a
	// measured latency, a closed one is refused, a stalled one times out, and
	// no socket outlives Run.
	open := closingListener(t)
	refused := closedPort(t, "tcp")
	full := fullListener(t)
	spec := check.Spec{Type: check.TCP, Interval: 200 * time.Millisecond, Timeout: 150 * time.Millisecond, Rise: 1, Fall: 1}
	targets := []Target{{Addr: loopback, Port: open, Spec: spec}, {Addr: loopback, Port: refused, Spec: spec},
		{Addr: loopback, Port: full, Spec: spec}}
	before := openFDs(t)

	s := NewScheduler(nil, Options{})
	if _, ok := s.checkers[check.TCP].(tcpChecker); !ok {
		t.Fatal("the default tcp checker is not the engine's")
	}
	s.Update(targets)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	deadline := time.Now().Add(3 * time.Second)
	for {
		snap := s.Snapshot()
		if snap[targets[0].Key()].Probes >= 2 && snap[targets[1].Key()].Probes >= 2 && snap[targets[2].Key()].Probes >= 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("targets not probed twice within 3s: %+v", snap)
		}
		time.Sleep(20 * time.Millisecond)
	}
	// Stop while the stalled port's connect is in flight: its socket must
	// be closed too.
	for !s.isRunning(targets[2].Key()) {
		if time.Now().After(deadline) {
			t.Fatal("the stalled port's probe never started again")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}

	snap := s.Snapshot()
	if r := snap[targets[0].Key()]; r.State != Up || r.LastError != "" || r.Latency <= 0 || r.Latency > 150*time.Millisecond {
		t.Errorf("open port: %+v, want up with a latency in (0, 150ms]", r)
	}
	if r := snap[targets[1].Key()]; r.State != Down || !strings.HasSuffix(r.LastError, ": connection refused") {
		t.Errorf("closed port: %+v, want down with connection refused", r)
	}
	if r := snap[targets[2].Key()]; r.State != Down || !strings.HasSuffix(r.LastError, ": timeout after 150ms") ||
		r.Latency < 150*time.Millisecond {
		t.Errorf("stalled port: %+v, want down after a 150ms timeout", r)
	}
	// The listener closes what it accepted in its own time; allow it a moment.
	for deadline := time.Now().Add(time.Second); openFDs(t) != before && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if after := openFDs(t); after != before {
		t.Errorf("%d file descriptors open after Run returned, %d before: sockets or the epoll set leaked", after, before)
	}
}

func TestTCPEngineRemovedTargetDropsResult(t *testing.T) {
	// A target removed while its connect is in flight leaves no result and
	// its probe is not recorded when the connect times out.
	full := fullListener(t)
	tg := Target{Addr: loopback, Port: full, Spec: check.Spec{Type: check.TCP, Interval: time.Second, Timeout: 300 * time.Millisecond, Rise: 1, Fall: 1}}
	probes := make(chan struct{}, 8)
	s := NewScheduler(nil, Options{OnProbe: func(Target, bool, time.Duration, error) { probes <- struct{}{} }})
	s.Update([]Target{tg})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	// Wait until the probe is in flight (its entry is running), then remove.
	deadline := time.Now().Add(2 * time.Second)
	for !s.isRunning(tg.Key()) {
		if time.Now().After(deadline) {
			t.Fatal("probe never started")
		}
		time.Sleep(5 * time.Millisecond)
	}
	s.Update(nil)
	select {
	case <-probes:
		t.Fatal("the removed target's probe was recorded")
	case <-time.After(600 * time.Millisecond):
	}
	if _, ok := s.Snapshot()[tg.Key()]; ok {
		t.Error("removed target still in the snapshot")
	}
}

func TestTCPEngineLimitSkipsSlot(t *testing.T) {
	// With the engine full, a new probe is skipped (its entry released for
	// its next slot) rather than queued or failed.
	full := fullListener(t)
	s := NewScheduler(nil, Options{})
	g, err := newTCPEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	defer g.abort()
	s.sockets.limit = 1
	spec := check.Spec{Type: check.TCP, Interval: time.Second, Timeout: time.Second}
	a := newEntry("a", &Target{Addr: loopback, Port: full, Spec: spec}, &spec, time.Now())
	b := newEntry("b", &Target{Addr: loopback, Port: full, Spec: spec}, &spec, time.Now())
	a.running, b.running = true, true
	g.start(t.Context(), a)
	g.start(t.Context(), b)
	if len(g.list) != 1 || g.list[0].e != a {
		t.Fatalf("%d probes in flight, want only a's", len(g.list))
	}
	if !a.running || b.running {
		t.Errorf("running: a %v, b %v; want a still running and b released", a.running, b.running)
	}
	if b.result.Probes != 0 || b.result.State != Unknown {
		t.Errorf("skipped probe recorded a result: %+v", b.result)
	}
	if got := s.Load().Skipped[SkipLimit]; got != 1 {
		t.Errorf("Load counts %d slots skipped at the limit, want 1", got)
	}
}

func TestSchedulerCoalesces(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// 100 targets spread over a 1s interval, dispatched in 100ms batches:
		// about ten distinct start instants per round instead of 100, no
		// start later than its slot or more than 100ms early, and no drift.
		f := newFake(nil)
		s := newTestScheduler(f, Options{Coalesce: 100 * time.Millisecond})
		var targets []Target
		for i := range 100 {
			targets = append(targets, tcpTarget(uint16(1000+i), time.Second))
		}
		s.Update(targets)
		stop := startScheduler(t, s)
		time.Sleep(10*time.Second + 500*time.Millisecond)
		stop()
		instants := map[time.Time]bool{}
		for _, tg := range targets {
			st := f.startTimes(ap(tg))
			if len(st) < 10 {
				t.Fatalf("%s: %d probes in 10.5 intervals, want at least 10", ap(tg), len(st))
			}
			for k, at := range st {
				instants[at] = true
				// Slot k is the first start's slot plus k intervals; the first
				// start is itself at most 100ms before its slot.
				if d := at.Sub(st[0]) - time.Duration(k)*time.Second; d < -100*time.Millisecond || d > 100*time.Millisecond {
					t.Errorf("%s: start %d is %s off its cadence", ap(tg), k, d)
				}
			}
		}
		if n := len(instants); n > 12*11 {
			t.Errorf("%d distinct start instants over 11 rounds, want about 11 per round (batches of 100ms)", n)
		}
	})
}

// isRunning reports whether the target with key has a probe in flight.
func (s *Scheduler) isRunning(key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.entries[key]
	return e != nil && e.running
}

func TestTCPEngineIPv6AndSource(t *testing.T) {
	// The engine opens sockets the way the checker does: an IPv6 target, and
	// a source address that must be bound first (one that is not on this
	// host fails with a message that says so).
	port := acceptLoop(t, "[::1]:0", func(c net.Conn) { c.Close() }, func() {})
	spec := check.Spec{Type: check.TCP, Interval: 100 * time.Millisecond, Timeout: 80 * time.Millisecond, Rise: 1, Fall: 1}
	v6 := Target{Addr: netip.IPv6Loopback(), Port: port, Spec: spec}
	withSource := v6
	withSource.Spec.Source = netip.IPv6Loopback()
	badSource := v6
	badSource.Spec.Source = netip.MustParseAddr("2001:db8::1")
	targets := []Target{v6, withSource, badSource}

	s := NewScheduler(nil, Options{})
	s.Update(targets)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	deadline := time.Now().Add(3 * time.Second)
	for {
		snap := s.Snapshot()
		if snap[v6.Key()].State == Up && snap[withSource.Key()].State == Up && snap[badSource.Key()].State == Down {
			if e := snap[badSource.Key()].LastError; !strings.Contains(e, "bind source address 2001:db8::1") ||
				!strings.Contains(e, "is it configured on this host?") {
				t.Errorf("unavailable source: last error %q, want it to name the address and the fix", e)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("want v6 and v6-with-source up, the bad source down within 3s: %+v", snap)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestTCPEngineLimitFollowsOpenFiles(t *testing.T) {
	// A low open-files limit caps the probes in flight at half of it.
	var old syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &old); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
	if got := inFlightLimit(); old.Cur >= 2*maxSocketsInFlight && got != maxSocketsInFlight {
		t.Errorf("with %d open files allowed: limit %d, want %d", old.Cur, got, maxSocketsInFlight)
	}
	low := syscall.Rlimit{Cur: 1024, Max: old.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	if got := inFlightLimit(); got != 512 {
		t.Errorf("with 1024 open files allowed: limit %d, want 512", got)
	}
}

// TestTCPEngineLateExpiryAsksTheSocket: an engine too busy to harvest a
// completion before the probe's deadline (here: nothing runs its loop) must
// not fail the probe for it. The connect completed before the engine got to
// the deadline; the engine asks the socket and records a pass. Before, it
// recorded "timeout": a healthy backend marked down by the director's own
// backlog.
func TestTCPEngineLateExpiryAsksTheSocket(t *testing.T) {
	port, free := stalledListener(t)
	var got []string
	s := NewScheduler(nil, Options{OnProbe: func(_ Target, ok bool, _ time.Duration, err error) {
		got = append(got, fmtProbe(ok, 0, err))
	}})
	g, err := newTCPEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	defer g.abort()
	spec := check.Spec{Type: check.TCP, Interval: 5 * time.Second, Timeout: 1500 * time.Millisecond}
	e := newEntry("late", &Target{Addr: loopback, Port: port, Spec: spec}, &spec, time.Now())
	e.running = true
	g.start(t.Context(), e)
	if len(g.list) != 1 {
		t.Fatal("the connect did not stay in progress: the accept queue is not full")
	}
	free() // the SYN retransmitted after ~1 s is answered
	deadline := time.Now().Add(5 * time.Second)
	for g.stateAtExpiry(g.list[0]) != nil {
		if time.Now().After(deadline) {
			t.Fatal("the connect never completed")
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(time.Until(g.list[0].deadline.Add(100 * time.Millisecond)))
	g.expire(t.Context(), time.Now())
	if len(got) != 1 || got[0] != "ok 0s" {
		t.Errorf("probe results %q, want one pass: the connect completed, only the engine was late", got)
	}
}

// TestTCPEngineTimeoutStartsAtStart: probes whose slots passed while the
// engine was not running (a busy engine) are timed from when their connect
// starts, not from their slot, and pass.
func TestTCPEngineTimeoutStartsAtStart(t *testing.T) {
	open := closingListener(t)
	var oks atomic.Int64
	s := NewScheduler(nil, Options{OnProbe: func(_ Target, ok bool, latency time.Duration, _ error) {
		if ok && latency < 200*time.Millisecond {
			oks.Add(1)
		}
	}})
	g, err := newTCPEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	spec := check.Spec{Type: check.TCP, Interval: 5 * time.Second, Timeout: 200 * time.Millisecond}
	var targets []Target
	for i := range 20 {
		targets = append(targets, Target{Addr: loopback, Port: open,
			Spec: check.Spec{Type: spec.Type, Interval: spec.Interval, Timeout: spec.Timeout, Rise: 1 + i}})
	}
	s.Update(targets)
	s.mu.Lock()
	s.queue.each(func(e *entry) { e.next = time.Now() })
	s.mu.Unlock()
	time.Sleep(500 * time.Millisecond) // the engine is not running yet
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	var wg sync.WaitGroup
	go func() { done <- g.run(ctx, &wg) }()
	deadline := time.Now().Add(5 * time.Second)
	for oks.Load() < 20 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	g.close()
	if n := oks.Load(); n != 20 {
		t.Errorf("%d of 20 late probes passed within their 200 ms, want all", n)
	}
}

// TestTCPEngineBusyDispatchEndsTimeouts: a dispatcher that finds starts due
// batch after batch (always behind) still ends the probes past their
// deadline between batches. It judged them only once it caught up: at
// 10,000 targets under emulation a dead real server's probes stayed open
// for 30-45 s, their targets skipped every slot as busy, and detection took
// that long.
func TestTCPEngineBusyDispatchEndsTimeouts(t *testing.T) {
	stalled, free := stalledListener(t)
	defer free()
	open := closingListener(t)
	var clock atomic.Int64
	clock.Store(time.Now().UnixNano())
	var mu sync.Mutex
	var dead []string
	s := NewScheduler(nil, Options{Now: func() time.Time { return time.Unix(0, clock.Load()) },
		OnProbe: func(tg Target, ok bool, _ time.Duration, err error) {
			if tg.Port == stalled {
				mu.Lock()
				dead = append(dead, fmtProbe(ok, 0, err))
				mu.Unlock()
			}
		}})
	g, err := newTCPEngine(s)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	defer g.abort()
	spec := check.Spec{Type: check.TCP, Interval: 5 * time.Second, Timeout: time.Second}
	e := newEntry("dead", &Target{Addr: loopback, Port: stalled, Spec: spec}, &spec, s.now())
	e.running = true
	g.start(t.Context(), e)
	if len(g.list) != 1 {
		t.Fatal("the connect did not stay in progress: the accept queue is not full")
	}
	var targets []Target
	for i := range 3 * maxBatch {
		targets = append(targets, Target{Addr: loopback, Port: open,
			Spec: check.Spec{Type: check.TCP, Interval: spec.Interval, Timeout: spec.Timeout, Rise: 1 + i}})
	}
	s.Update(targets)
	clock.Add(int64(2 * time.Second)) // past the dead probe's deadline
	s.mu.Lock()
	s.queue.each(func(e *entry) { e.next = s.now() })
	s.mu.Unlock()
	var wg sync.WaitGroup
	g.dispatch(t.Context(), &wg) // three batches due at once
	mu.Lock()
	defer mu.Unlock()
	if len(dead) != 1 || !strings.HasSuffix(dead[0], "timeout after 1s") {
		t.Errorf("results of the probe past its deadline while the dispatcher worked through its batches: %q, want one timeout", dead)
	}
}
