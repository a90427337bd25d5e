package health

import (
	"context"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/anycast-director/director/health/check"
)

// TestSchedulerLateSendIsNotAFailure: the real http checker behind a
// director so busy that each probe's goroutine runs late after the probe's
// clock started (modelled by a delay before the checker proper runs). A
// healthy backend whose probe could only be sent after its deadline must
// not fail: the backend never had its timeout, so the result is discarded
// and counted. A probe sent late that passes is a pass, and one the backend
// refuses is a failure: being late excuses only timeouts.
func TestSchedulerLateSendIsNotAFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go serveLean(ln)
	healthy := addrPort(t, ln.Addr())
	const timeout = 400 * time.Millisecond // late sends: after 100 ms
	target := func(port uint16, fall int) Target {
		return Target{Addr: loopback, Port: port, Spec: check.Spec{Type: check.HTTP, Path: "/",
			Interval: time.Second, Timeout: timeout, Rise: 1, Fall: fall}}
	}
	// stalled: sent 50 ms after its deadline, inside the 100 ms within
	// which a timeout noticed late still blamed the backend. slow: sent
	// late but with time left. dead: refuses, sent late.
	stalled, slow, dead := target(healthy, 1), target(healthy, 2), target(closedPort(t, "tcp"), 1)
	delay := map[string]time.Duration{stalled.Key(): timeout + 50*time.Millisecond,
		slow.Key(): 200 * time.Millisecond, dead.Key(): 200 * time.Millisecond}

	http := DefaultCheckers()[check.HTTP]
	busy := CheckerFunc(func(ctx context.Context, tg Target) error {
		time.Sleep(delay[tg.Key()]) // the director's backlog, not a wait for anything
		return http.Check(ctx, tg)
	})
	var mu sync.Mutex
	failures := map[string][]string{}
	s := NewScheduler(nil, Options{Checkers: map[check.Type]Checker{check.HTTP: busy},
		OnProbe: func(tg Target, ok bool, _ time.Duration, err error) {
			if !ok {
				mu.Lock()
				failures[tg.Key()] = append(failures[tg.Key()], err.Error())
				mu.Unlock()
			}
		}})
	s.Update([]Target{stalled, slow, dead})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	// Until the stalled target has two outcomes, discarded or failed.
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	giveUp := time.After(10 * time.Second)
	for outcomes := 0; outcomes < 2; {
		select {
		case <-tick.C:
		case <-giveUp:
			t.Fatal("the stalled target had not two outcomes within 10 s")
		}
		mu.Lock()
		outcomes = int(s.Load().Discarded) + len(failures[stalled.Key()])
		mu.Unlock()
	}
	cancel()
	if err := <-done; err != nil { // every probe has ended and is counted
		t.Fatal(err)
	}

	snap := s.Snapshot()
	if f := failures[stalled.Key()]; len(f) > 0 || snap[stalled.Key()].State == Down {
		t.Errorf("healthy backend whose probes were sent after their deadline failed %d times (%v), state %+v; want no failure",
			len(f), f, snap[stalled.Key()])
	}
	if l := s.Load(); l.Discarded < 2 {
		t.Errorf("Load %+v, want the 2 probes sent after their deadline discarded", l)
	}
	if r := snap[slow.Key()]; r.State != Up || len(failures[slow.Key()]) > 0 {
		t.Errorf("backend probed late with time left: %+v, failures %v; want up", r, failures[slow.Key()])
	}
	if r := snap[dead.Key()]; r.State != Down || !strings.Contains(r.LastError, "connection refused") {
		t.Errorf("refusing backend probed late: %+v, want down, refused", r)
	}
}

// TestSchedulerDiscardsLatePasses: a probe whose answer was read in time
// but whose checker returned 50 ms after the deadline (the director was
// slow to run it on) is not a timeout of the backend: it used to be
// counted as one, noticed within the quarter of the timeout that still
// blamed the backend, and marked it down. It is discarded.
func TestSchedulerDiscardsLatePasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var runs atomic.Int64
		f := newFake(func(ctx context.Context, _ Target) error {
			if runs.Add(1) == 1 {
				<-ctx.Done()
				time.Sleep(50 * time.Millisecond) // the director's delay, not a wait for anything
			}
			return nil
		})
		var failed atomic.Int64
		s := newTestScheduler(f, Options{OnProbe: func(_ Target, ok bool, _ time.Duration, _ error) {
			if !ok {
				failed.Add(1)
			}
		}})
		healthy := tcpTarget(1, time.Second)
		s.Update([]Target{healthy})
		stop := startScheduler(t, s)
		time.Sleep(3 * time.Second)
		stop()
		if n, r := failed.Load(), s.Snapshot()[healthy.Key()]; n > 0 || r.State != Up {
			t.Errorf("healthy backend failed %d times, now %+v; want its late pass discarded and up", n, r)
		}
		if l := s.Load(); l.Discarded != 1 {
			t.Errorf("Load %+v, want the late pass discarded", l)
		}
	})
}
