package health

import (
	"context"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
)

func TestSchedulerRealProbesDoNotLeak(t *testing.T) {
	// Real checkers against loopback listeners that never answer: every probe
	// overruns its deadline. After Run returns no goroutine may remain.
	full, silent := fullListener(t), silentListener(t)
	silentUDP := udpServer(t, func([]byte) [][]byte { return nil })
	spec := func(typ check.Type) check.Spec {
		return check.Spec{Type: typ, Interval: 300 * time.Millisecond, Timeout: 200 * time.Millisecond, Rise: 1, Fall: 1}
	}
	targets := []Target{
		{Addr: loopback, Port: full, Spec: spec(check.TCP)},
		{Addr: loopback, Port: silent, Spec: spec(check.HTTP)},
		{Addr: loopback, Port: silent, Spec: spec(check.HTTPS)},
		{Addr: loopback, Port: silentUDP, Spec: spec(check.UDP)},
		{Addr: loopback, Port: silentUDP, Spec: spec(check.DNS)},
		{Addr: loopback, Port: 1, Spec: spec(check.Exec)},
	}
	targets[5].Spec.Command = []string{"/bin/sleep", "10"}

	baseline := runtime.NumGoroutine()
	var mu sync.Mutex
	fails := map[check.Type]int{}
	s := NewScheduler(nil, Options{OnProbe: func(t Target, ok bool, _ time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			fails[t.Spec.Type]++
		}
	}})
	s.Update(targets)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	time.Sleep(time.Second)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return within 2s of cancel")
	}

	mu.Lock()
	for _, tg := range targets {
		if fails[tg.Spec.Type] == 0 {
			t.Errorf("%s probe never completed with a failure", tg.Spec.Type)
		}
	}
	mu.Unlock()
	for _, tg := range targets {
		if r := s.Snapshot()[tg.Key()]; r.State != Down || !strings.Contains(r.LastError, "timeout after 200ms") {
			t.Errorf("%s: state %s, last error %q; want down after a 200ms timeout", tg.Spec.Type, r.State, r.LastError)
		}
	}
	// Goroutines of the runtime's own (poller, timers) may take a moment.
	deadline := time.Now().Add(2 * time.Second)
	for runtime.NumGoroutine() > baseline {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<16)
			t.Fatalf("%d goroutines after Run returned, %d before:\n%s",
				runtime.NumGoroutine(), baseline, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestSchedulerRealTCPUpDown(t *testing.T) {
	// A real listener comes and goes; the verdict follows with rise/fall and
	// every flip is signalled.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	port := addrPort(t, ln.Addr())
	tg := Target{Addr: loopback, Port: port, Spec: check.Spec{Type: check.TCP, Interval: 50 * time.Millisecond,
		Timeout: 40 * time.Millisecond, Rise: 2, Fall: 2}}
	s := NewScheduler(nil, Options{})
	s.Update([]Target{tg})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// waitFor reads Changes until the target reaches want (bounded: 2 s).
	waitFor := func(want State) Result {
		t.Helper()
		timeout := time.After(2 * time.Second)
		for {
			if r := s.Snapshot()[tg.Key()]; r.State == want {
				return r
			}
			select {
			case <-s.Changes():
			case <-timeout:
				t.Fatalf("target did not become %s within 2s: %+v", want, s.Snapshot()[tg.Key()])
			}
		}
	}
	up := waitFor(Up)
	if up.Reason != "2/2 probes passed" || up.LastError != "" || up.Probes < 2 {
		t.Errorf("up result %+v, want reason \"2/2 probes passed\" after at least 2 probes", up)
	}
	ln.Close()
	down := waitFor(Down)
	wantErr := fmt.Sprintf("connect 127.0.0.1:%d: connection refused", port)
	if down.LastError != wantErr || down.Reason != "2/2 probes failed: "+wantErr {
		t.Errorf("down result %+v, want last error %q and reason \"2/2 probes failed: ...\"", down, wantErr)
	}
	if !down.Since.After(up.Since) || down.Probes < up.Probes+2 {
		t.Errorf("down since %v after up since %v, probes %d after %d: want a later change after 2 more probes",
			down.Since, up.Since, down.Probes, up.Probes)
	}
}
