package health

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
)

// Benchmarks for the figures issue 2 asks of `make bench`. Run them with
//
//	go test -run '^$' -bench . -benchtime 2s ./health
//
// Every check is a real, new connection (no reuse) to a listener in a separate
// process on 127.0.0.1. Two figures per benchmark:
//   - checks/s/core: checks per wall-clock second divided by GOMAXPROCS. The
//     listener process competes for the same cores, so this understates what a
//     director probing remote backends gets, and it drops when other work shares
//     the machine.
//   - checks/cpu-s: checks per CPU-second used by this process (user + system,
//     all threads, including the kernel's connect and close work done on its
//     behalf): the cost of a check on one core, independent of machine load.

// listenerEnv makes the test binary serve as a benchmark listener instead of
// running tests (see TestMain): the listener then runs in its own process, so
// the CPU time measured here is the checker's alone, as on a director whose
// backends are other machines.
const listenerEnv = "HEALTH_BENCH_LISTENER"

// TestMain runs the tests, or the benchmark listener when listenerEnv is set.
func TestMain(m *testing.M) {
	if kind := os.Getenv(listenerEnv); kind != "" {
		os.Exit(serveBenchListener(kind))
	}
	os.Exit(m.Run())
}

// serveBenchListener listens on 127.0.0.1, prints the port, and serves kind
// ("tcp": accept and close; "http": net/http answering "ok"; "http-lean": a
// canned answer to every request head, see serveLean) until stdin closes.
func serveBenchListener(kind string) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println(ln.Addr().(*net.TCPAddr).Port)
	switch kind {
	case "http":
		srv := &http.Server{
			Handler:  http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") }),
			ErrorLog: log.New(io.Discard, "", 0), // resets from closing probes are expected
		}
		go srv.Serve(ln)
	case "http-lean":
		for range runtime.GOMAXPROCS(0) {
			go serveLean(ln)
		}
	default:
		// "tcp" also answers on 127.0.0.2-10 (benchAddr), the same port:
		// ten real servers, as a service of the comparison has.
		lns := []net.Listener{ln}
		for i := 1; i < 10; i++ {
			more, err := net.Listen("tcp", netip.AddrPortFrom(benchAddr(i), uint16(ln.Addr().(*net.TCPAddr).Port)).String())
			if err != nil {
				fmt.Fprintln(os.Stderr, err)
				return 1
			}
			lns = append(lns, more)
		}
		for _, l := range lns {
			for range runtime.GOMAXPROCS(0) {
				go acceptAndClose(l)
			}
		}
	}
	io.Copy(io.Discard, os.Stdin) // the parent closes stdin (or dies) to stop us
	return 0
}

// benchAddr is the i-th (0-9) loopback address the "tcp" bench listener
// answers on: 127.0.0.1-10.
func benchAddr(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, byte(i + 1)}) }

// acceptAndClose accepts connections on ln and closes them until ln closes.
func acceptAndClose(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// leanAnswer is what the lean listener sends to every request.
const leanAnswer = "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"

// serveLean accepts connections and answers each request head with
// leanAnswer, without parsing it: a real server answers a health check far
// cheaper than net/http does here, and the scheduler benchmark measures the
// checker, not how many requests one local process can parse while sharing
// the cores with it.
func serveLean(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(5 * time.Second))
			buf := make([]byte, 1024)
			var head []byte
			for !bytes.Contains(head, []byte("\r\n\r\n")) && len(head) < 8<<10 {
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				head = append(head, buf[:n]...)
			}
			_, _ = io.WriteString(c, leanAnswer)
		}()
	}
}

// benchListener starts a listener process of kind and returns its port. It is
// stopped, by its PID, when b ends.
func benchListener(b *testing.B, kind string) uint16 {
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), listenerEnv+"="+kind)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		b.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() {
		stdin.Close()
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	var port uint16
	if _, err := fmt.Fscan(stdout, &port); err != nil {
		b.Fatalf("benchmark listener did not report its port: %v", err)
	}
	return port
}

// benchChecker measures raw checker throughput: many probes in parallel, each
// under its own deadline as the scheduler runs them.
func benchChecker(b *testing.B, c Checker, tg Target) {
	b.SetParallelism(8) // 8 x GOMAXPROCS probes in flight keeps both sides busy
	var failed atomic.Int64
	var firstErr atomic.Value
	start, cpu0 := time.Now(), cpuTime(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			if err := c.Check(ctx, tg); err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err)
			}
			cancel()
		}
	})
	elapsed := time.Since(start)
	// A listener process starved of CPU (a busy shared machine) lets its
	// accept queue overflow and the kernel drops SYNs: a few such probes time
	// out. They are reported; more than 1% fails the benchmark.
	if n := failed.Load(); n > 0 {
		b.Logf("%d of %d probes failed, first: %v", n, b.N, firstErr.Load())
		if n*100 > int64(b.N) {
			b.Fatal("more than 1% of probes failed")
		}
	}
	b.ReportMetric(float64(failed.Load()), "failed")
	b.ReportMetric(float64(b.N)/elapsed.Seconds()/float64(runtime.GOMAXPROCS(0)), "checks/s/core")
	b.ReportMetric(float64(b.N)/cpuTime(b).Sub(cpu0).Seconds(), "checks/cpu-s")
}

func BenchmarkCheckTCP(b *testing.B) {
	tg := Target{Addr: loopback, Port: benchListener(b, "tcp"), Spec: check.Spec{Type: check.TCP, Timeout: time.Second}}
	benchChecker(b, DefaultCheckers()[check.TCP], tg)
}

func BenchmarkCheckHTTP(b *testing.B) {
	tg := Target{Addr: loopback, Port: benchListener(b, "http"),
		Spec: check.Spec{Type: check.HTTP, Path: "/healthz", ExpectStatus: []int{200}, ExpectBody: "ok", Timeout: time.Second}}
	benchChecker(b, DefaultCheckers()[check.HTTP], tg)
}

// window is the bucket width of the spread figures; starts are counted in
// finer slices of width slice to detect stalls. A slice spans two and a half
// coalescing windows, so batching alone never leaves one empty.
const (
	window = 100 * time.Millisecond
	slice  = 50 * time.Millisecond
)

// startCounter wraps a checker and counts probe starts per slice since t0,
// and, from the Scheduler's OnProbe, the results: how many per slice and
// how many failed. A failure counts only once the Scheduler recorded it: a
// probe it discarded (sent too late, or its timeout noticed late) has no
// verdict, marks no backend down, and is counted apart.
type startCounter struct {
	inner     Checker
	t0        time.Time
	buckets   []atomic.Int64
	results   []atomic.Int64
	failed    atomic.Int64
	lastErr   atomic.Value
	failTimes atomic.Value
}

func (c *startCounter) Check(ctx context.Context, t Target) error {
	c.note()
	return c.inner.Check(ctx, t)
}

// result counts a probe result the Scheduler recorded.
func (c *startCounter) result(ok bool, err error) {
	if i := int(time.Since(c.t0) / slice); i >= 0 && i < len(c.results) {
		c.results[i].Add(1)
	}
	if !ok {
		c.failed.Add(1)
		c.lastErr.Store(err)
		c.failTimes.Store(time.Since(c.t0))
	}
}

// note counts a probe in the current slice.
func (c *startCounter) note() {
	if i := int(time.Since(c.t0) / slice); i >= 0 && i < len(c.buckets) {
		c.buckets[i].Add(1)
	}
}

// spread is the largest window's count divided by the mean count per window.
func spread(counts []int64) float64 {
	var sum int64
	for _, n := range counts {
		sum += n
	}
	if sum == 0 {
		return 0
	}
	return float64(slices.Max(counts)) / (float64(sum) / float64(len(counts)))
}

// benchScheduler runs one Scheduler with perCore x GOMAXPROCS distinct
// targets at a 1 s interval, i.e. a demand of perCore checks/s per core, for
// one start-up interval plus steady seconds. It reports the achieved
// checks/s/core in steady state, the spread ratio of probe starts over 100 ms
// windows for the first interval (start-up burst) and steady state, and how
// many 50 ms slices saw no start at all (stalls of the whole process).
func benchScheduler(b *testing.B, typ check.Type, port uint16, perCore, steady int) {
	benchSchedulerWith(b, typ, DefaultCheckers()[typ], port, perCore, steady)
}

// benchSchedulerWith is benchScheduler with the checker given. The built-in
// tcp checker runs in the Scheduler's engine, where no wrapper can see a
// start: its probes are counted as they complete (OnProbe), which on
// loopback is within microseconds of their start.
func benchSchedulerWith(b *testing.B, typ check.Type, inner Checker, port uint16, perCore, steady int) {
	const interval = time.Second
	cores := runtime.GOMAXPROCS(0)
	n := perCore * cores
	targets := make([]Target, n)
	for i := range targets {
		// Distinct keys for one listener: the Key covers Rise, so vary it.
		targets[i] = Target{Addr: loopback, Port: port, Spec: check.Spec{Type: typ, Path: "/healthz",
			Interval: interval, Timeout: 500 * time.Millisecond, Rise: 1 + i, Fall: 1}}
	}
	startWindows := int(interval / window)
	total := startWindows + steady*startWindows
	for b.Loop() {
		perWindow := int(window / slice)
		counter := &startCounter{inner: inner, buckets: make([]atomic.Int64, total*perWindow), results: make([]atomic.Int64, total*perWindow)}
		opts := Options{Rand: rand.New(rand.NewPCG(1, 1)), Checkers: map[check.Type]Checker{typ: counter},
			OnProbe: func(_ Target, ok bool, _ time.Duration, err error) { counter.result(ok, err) }}
		if _, engine := inner.(tcpChecker); engine {
			opts.Checkers = nil
			opts.OnProbe = func(_ Target, ok bool, _ time.Duration, err error) {
				counter.note()
				counter.result(ok, err)
			}
		}
		s := NewScheduler(nil, opts)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		s.Update(targets)
		counter.t0 = time.Now() // Run anchors the first starts at its own start
		go func() { done <- s.Run(ctx) }()
		time.Sleep(time.Duration(startWindows) * window)
		cpu0 := cpuTime(b)
		time.Sleep(time.Duration(total-startWindows) * window)
		cpuUsed := cpuTime(b).Sub(cpu0)
		cancel()
		if err := <-done; err != nil {
			b.Fatal(err)
		}
		counts := make([]int64, total)
		stalls := 0
		var steadyResults int64
		for i := range counter.buckets {
			n := counter.buckets[i].Load()
			counts[i/perWindow] += n
			if n == 0 {
				stalls++
			}
			if i >= startWindows*perWindow {
				steadyResults += counter.results[i].Load()
			}
		}
		if f := counter.failed.Load(); f > 0 {
			b.Logf("%d probes failed, last: %v at %v", f, counter.lastErr.Load(), counter.failTimes.Load())
		}
		var steadySum int64
		for _, c := range counts[startWindows:] {
			steadySum += c
		}
		b.ReportMetric(float64(steadySum)/float64(steady)/float64(cores), "checks/s/core")
		b.ReportMetric(float64(steadySum)/cpuUsed.Seconds(), "checks/cpu-s")
		b.ReportMetric(float64(cpuUsed.Nanoseconds())/float64(steadySum), "cpu-ns/check")
		b.ReportMetric(spread(counts[:startWindows]), "spread-start")
		b.ReportMetric(spread(counts[startWindows:]), "spread-steady")
		b.ReportMetric(float64(counter.failed.Load()), "failed")
		b.ReportMetric(float64(s.Load().Discarded), "discarded")
		// Kept up: the probe results achieved in steady state over those
		// demanded (every target once per interval). A discarded probe is
		// a start without a result: it does not count.
		b.ReportMetric(float64(steadyResults)/float64(steady)/(float64(n)/interval.Seconds()), "kept-up")
		// With thousands of starts due per 50 ms, a slice without any means
		// this process did not run: the machine, not the schedule, clumped
		// the starts that followed.
		b.ReportMetric(float64(stalls), "stalled-50ms")
		if spread(counts[:startWindows]) > 1.2 || spread(counts[startWindows:]) > 1.2 {
			b.Logf("starts per 100 ms: %v", counts)
		}
	}
}

// BenchmarkSchedulerTCP demands 10,000 tcp checks/s per core from one scheduler.
func BenchmarkSchedulerTCP(b *testing.B) {
	benchScheduler(b, check.TCP, benchListener(b, "tcp"), 10_000, 3)
}

// BenchmarkSchedulerHTTP demands 5,000 http checks/s per core from one
// scheduler, against a lean listener (serveLean) so that failures are the
// checker's, not a net/http server's swamped by one cell's batch of starts.
func BenchmarkSchedulerHTTP(b *testing.B) {
	benchScheduler(b, check.HTTP, benchListener(b, "http-lean"), 5_000, 3)
}

// cpuClock is process CPU time (user + system, every thread), a clock that
// other processes on a shared machine cannot speed up or slow down.
type cpuClock time.Duration

// cpuTime reads the process CPU time.
func cpuTime(b *testing.B) cpuClock {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return cpuClock(time.Duration(ru.Utime.Nano() + ru.Stime.Nano()))
}

// Sub returns the CPU time spent between c0 and c.
func (c cpuClock) Sub(c0 cpuClock) time.Duration { return time.Duration(c - c0) }

// BenchmarkSchedulerOverhead runs 50,000 targets per core at a 1 s interval
// with a checker that does nothing: the scheduler's own CPU per probe
// (cpu-ns/check) and its spread, apart from network and listener costs.
func BenchmarkSchedulerOverhead(b *testing.B) {
	noop := CheckerFunc(func(context.Context, Target) error { return nil })
	benchSchedulerWith(b, check.TCP, noop, 1, 50_000, 3)
}
