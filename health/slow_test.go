//go:build !race

// Scale tests: timing with a thousand probes in flight means nothing under
// the race detector (5-10x slower), so they build without it; make
// test-unit runs them in a second pass without -race.

package health

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
)

// TestAtScaleSlowHTTPDoesNotDelayOthers is issue 12's scenario: 1,000
// http targets that accept and never answer (each probe holds its
// connection for the whole 900 ms timeout), and a healthy http canary. The
// canary is then killed: it must be marked down within interval x fall +
// timeout (2.5 s; asserted with 1 s of slack), however many other backends
// are slow, and the slow targets get at least 80 % of their 1,000 probes/s.
// On ca5f182 (a pool of 256 workers) the canary took 3.7-5.7 s (4.2 s on a
// busy machine) and the slow targets got 271-281 probes/s.
//
// A host too busy to give the test the CPU it needs (about a fifth of a
// core) makes the scheduler stretch its intervals and say so (Load): the
// bounds then scale with the largest stretch it declared, so the test still
// fails if slow backends delay the canary without the scheduler noticing.
func TestAtScaleSlowHTTPDoesNotDelayOthers(t *testing.T) {
	if testing.Short() {
		t.Skip("1,000 probes per second for about 10 s")
	}
	const slowTargets = 1000
	slowPort := silentListener(t)
	canarySrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }))
	defer canarySrv.Close()
	canaryPort := addrPort(t, canarySrv.Listener.Addr())

	slow := check.Spec{Type: check.HTTP, Interval: time.Second, Timeout: 900 * time.Millisecond, Rise: 1, Fall: 1}
	var targets []Target
	for i := range slowTargets {
		sp := slow
		sp.Path = fmt.Sprintf("/slow/%d", i)
		targets = append(targets, Target{Addr: loopback, Port: slowPort, Spec: sp})
	}
	canary := Target{Addr: loopback, Port: canaryPort, Spec: check.Spec{Type: check.HTTP, Path: "/",
		Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 2}}
	targets = append(targets, canary)

	var slowDone atomic.Int64
	s := NewScheduler(nil, Options{OnProbe: func(tg Target, _ bool, _ time.Duration, _ error) {
		if strings.HasPrefix(tg.Spec.Path, "/slow/") {
			slowDone.Add(1)
		}
	}})
	s.Update(targets)
	stop := runReal(t, s)
	defer stop()

	waitState(t, s, canary, Up, 5*time.Second)
	// Let every slow target reach its steady state: one probe in flight
	// per target most of the time.
	time.Sleep(3 * time.Second)
	stretch := sampleStretch(t, s)
	before, discardedBefore, measuredFrom := slowDone.Load(), s.Load().Discarded, time.Now()

	canarySrv.CloseClientConnections()
	canarySrv.Listener.Close()
	killed := time.Now()
	took := waitState(t, s, canary, Down, 20*time.Second).Sub(killed)
	ran := slowDone.Load() - before + int64(s.Load().Discarded-discardedBefore)
	rate := float64(ran) / time.Since(measuredFrom).Seconds()
	worst := stretch()
	t.Logf("canary down %s after it was killed (bound: interval x fall + timeout = 2.5s); slow targets probed at %.0f/s of %d/s demanded; intervals stretched up to x%.0f",
		took.Round(time.Millisecond), rate, slowTargets, worst)
	if worst > 1 {
		t.Logf("the scheduler was overloaded: %+v", s.Load())
	}
	interval, timeout := canary.Spec.Interval, canary.Spec.Timeout
	if bound := time.Duration(float64(interval)*worst)*2 + timeout + time.Second; took > bound {
		t.Errorf("canary marked down %s after it was killed, want within %s", took, bound)
	}
	if rate < 0.8*slowTargets/worst {
		t.Errorf("slow targets probed at %.0f/s, want at least 80%% of the %.0f/s demanded", rate, slowTargets/worst)
	}
}

// sampleStretch samples s's interval stretch until the test ends; the
// returned function gives the largest seen so far.
func sampleStretch(t *testing.T, s *Scheduler) func() float64 {
	var worst atomic.Uint64 // float64 bits
	worst.Store(math.Float64bits(1))
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	sample := func() {
		if st := s.Load().Stretch; st > math.Float64frombits(worst.Load()) {
			worst.Store(math.Float64bits(st))
		}
	}
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			sample()
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return func() float64 { sample(); return math.Float64frombits(worst.Load()) }
}

// runReal runs s on the real clock until the returned stop is called.
func runReal(t *testing.T, s *Scheduler) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	return func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	}
}

// waitState polls until tg has state want and returns when it was first seen.
func waitState(t *testing.T, s *Scheduler, tg Target, want State, limit time.Duration) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		if r := s.Snapshot()[tg.Key()]; r.State == want {
			return r.Since
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not %s within %s: %+v", tg.Spec.Path, want, limit, s.Snapshot()[tg.Key()])
		}
		time.Sleep(5 * time.Millisecond)
	}
}
