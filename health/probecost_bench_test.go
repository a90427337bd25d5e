package health

import (
	"context"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
)

// BenchmarkProbeCost measures what one built-in tcp probe costs the
// director at the load of the keepalived comparison (BENCH-compare.md:
// 1,000 distinct targets, TCP every 2 s, so 500 probes/s), here at 1 s so
// the run is short: every target is a real connect to a listener process on
// loopback, through the whole Scheduler (dispatcher, tcp engine, dampener,
// result publication and an OnProbe hook like the daemon's metrics).
//
// Three figures per completed probe, over a steady window after the first
// interval:
//   - cpu-ns/probe: this process's CPU (user + system, every thread). On
//     loopback it includes the listener's kernel side of each handshake,
//     run inside the connect call, as the VM's veth pairs do.
//   - allocs/probe: heap allocations (runtime.MemStats.Mallocs), which
//     become GC work.
//   - ctxsw/probe: context switches of this process's threads (voluntary
//     and not). Under emulation (the VM's qemu TCG) a switch costs far more
//     than on the host, so this is the figure that predicts the VM's CPU
//     best: Go's thread hand-offs, its monitor's polling and preemptions all
//     show here.
func BenchmarkProbeCost(b *testing.B) {
	port := benchListener(b, "tcp")
	const n, interval, steady = 1000, time.Second, 4 * time.Second
	targets := make([]Target, n)
	for i := range targets {
		// Distinct keys for one listener: timeouts a microsecond apart. Rise
		// and fall are the comparison's, so verdicts settle Up as there.
		targets[i] = Target{Addr: loopback, Port: port, Spec: check.Spec{Type: check.TCP,
			Interval: interval, Timeout: 500*time.Millisecond + time.Duration(i)*time.Microsecond, Rise: 1, Fall: 3}}
	}
	for b.Loop() {
		var probes, failed atomic.Int64
		onProbe := func(_ Target, ok bool, _ time.Duration, _ error) {
			probes.Add(1)
			if !ok {
				failed.Add(1)
			}
		}
		s := NewScheduler(nil, Options{Rand: rand.New(rand.NewPCG(1, 1)), OnProbe: onProbe})
		s.Update(targets)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(interval + interval/2) // first probes of every target
		p0, u0 := probes.Load(), usage(b)
		time.Sleep(steady)
		p1, u1 := probes.Load(), usage(b)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		got := float64(p1 - p0)
		if got == 0 {
			b.Fatal("no probe completed in the window")
		}
		b.ReportMetric(float64(u1.cpu-u0.cpu)/got, "cpu-ns/probe")
		b.ReportMetric(float64(u1.mallocs-u0.mallocs)/got, "allocs/probe")
		b.ReportMetric(float64(u1.switches-u0.switches)/got, "ctxsw/probe")
		b.ReportMetric(got/steady.Seconds()/(float64(n)/interval.Seconds()), "kept-up")
		b.ReportMetric(float64(failed.Load()), "failed")
	}
}

// resources is a reading of the process's CPU time, heap allocations and
// context switches.
type resources struct {
	cpu      time.Duration
	mallocs  uint64
	switches int64
}

// usage reads the process's resources so far.
func usage(b *testing.B) resources {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return resources{cpu: time.Duration(ru.Utime.Nano() + ru.Stime.Nano()), mallocs: ms.Mallocs,
		switches: ru.Nvcsw + ru.Nivcsw}
}

// BenchmarkSchedulerHeap reports the heap a Scheduler holds per target in
// steady state: 1,000 tcp targets probed for two intervals against a
// listener, then a Snapshot taken, as the announcer takes one each pass.
// Live bytes after a GC, divided by the targets: the part of directord's
// memory that grows with its targets. Two ways:
//
//   - service-checks: the comparison's N=100 x 10: 100 services, each with
//     its own check, on 10 real servers (127.0.0.1-10);
//   - distinct-checks: every target's check differs (the timeout), so no
//     two share a spec.
func BenchmarkSchedulerHeap(b *testing.B) {
	port := benchListener(b, "tcp")
	const n, interval = 1000, 500 * time.Millisecond
	spec := func(i int) check.Spec {
		return check.Spec{Type: check.TCP, Interval: interval, Timeout: 250*time.Millisecond + time.Duration(i)*time.Microsecond, Rise: 1, Fall: 3}
	}
	b.Run("service-checks", func(b *testing.B) {
		targets := make([]Target, n)
		for i := range targets {
			targets[i] = Target{Addr: benchAddr(i % 10), Port: port, Spec: spec(i / 10)}
		}
		measureSchedulerHeap(b, targets, interval)
	})
	b.Run("distinct-checks", func(b *testing.B) {
		targets := make([]Target, n)
		for i := range targets {
			targets[i] = Target{Addr: loopback, Port: port, Spec: spec(i)}
		}
		measureSchedulerHeap(b, targets, interval)
	})
}

// measureSchedulerHeap runs a Scheduler on targets for two intervals and
// reports the live heap it holds per target, every target up.
func measureSchedulerHeap(b *testing.B, targets []Target, interval time.Duration) {
	for b.Loop() {
		before := liveHeap()
		s := NewScheduler(nil, Options{})
		s.Update(targets)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- s.Run(ctx) }()
		time.Sleep(2 * interval)
		snap := s.Snapshot()
		after := liveHeap()
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		if len(snap) != len(targets) {
			b.Fatalf("snapshot has %d targets, want %d", len(snap), len(targets))
		}
		for k, r := range snap {
			if r.State != Up {
				b.Fatalf("%s is %s (%s), want every target up", k, r.State, r.Reason)
			}
		}
		b.ReportMetric(float64(after-before)/float64(len(targets)), "heap-B/target")
		runtime.KeepAlive(s)
	}
}

// liveHeap is the heap in use after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
