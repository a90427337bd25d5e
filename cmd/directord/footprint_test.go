//go:build !vm

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// footprintConfig writes a configuration with vips local VIPs of backends
// health-checked backends each. Backends are distinct addresses net.x.y.z:
// with net 127, loopback addresses that one listener on 0.0.0.0 accepts.
func footprintConfig(t testing.TB, dir string, net byte, vips, backends, port int, interval time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "director: { name: bench, announce: none, resync_interval: 5s, state_dir: %[1]s/state }\napi: { socket: %[1]s/d.sock }\nmetrics: { listen: \"\" }\nlog: { level: warn }\nservices:\n", dir)
	n := 0
	for v := 0; v < vips; v++ {
		fmt.Fprintf(&b, "  - name: s%d\n    vip: 127.200.%d.%d\n    port: %d\n    forwarding: local\n    min_healthy: 1\n", v, v/250, v%250+1, port)
		fmt.Fprintf(&b, "    health: { type: tcp, interval: %s, timeout: 500ms, rise: 1, fall: 2 }\n    backends:\n", interval)
		for j := 0; j < backends; j++ {
			n++
			fmt.Fprintf(&b, "      - { address: %d.%d.%d.%d }\n", net, 1+n/65000, (n/250)%250, n%250+1)
		}
	}
	path := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// procCPU returns a process's user+system CPU time.
func procCPU(pid int) (time.Duration, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	s := string(data)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * time.Second / 100, nil // USER_HZ is 100 on Linux
}

// procRSS returns a process's resident set size in bytes.
func procRSS(pid int) (int64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// BenchmarkDaemonFootprint runs the real daemon with 1,000 VIPs x 10 backends
// checked every 2 s (5,000 TCP checks/s) and reports its RSS and its CPU share
// of one core in steady state. Targets: under 100 MB and under 15 %. It runs
// two ways:
//
//   - remote: the backends are 10,000 addresses behind a tun device in a
//     network namespace of its own, answered by a responder process, as real
//     servers on other machines would be: the daemon's kernel does its side
//     of each handshake, not the servers' (needs root);
//   - loopback: the backends are loopback addresses of one listener process.
//     On loopback the kernel runs the listener's side of every handshake
//     (SYN, accept queue, the reset) inside the daemon's connect and close
//     calls, so this figure also counts the real servers' kernel work.
func BenchmarkDaemonFootprint(b *testing.B) {
	bin := buildDaemon(b)
	b.Run("remote", func(b *testing.B) {
		if os.Geteuid() != 0 {
			b.Fatal("needs root for a network namespace and a tun device; run make bench as root")
		}
		ns := startRemoteBackends(b)
		dir := b.TempDir()
		cfg := footprintConfig(b, dir, 10, 1000, 10, 9, 2*time.Second)
		measureFootprint(b, exec.Command("ip", "netns", "exec", ns, bin, "run", "-config", cfg), dir)
	})
	b.Run("loopback", func(b *testing.B) {
		port := startLoopbackListener(b)
		dir := b.TempDir()
		cfg := footprintConfig(b, dir, 127, 1000, 10, port, 2*time.Second)
		measureFootprint(b, exec.Command(bin, "run", "-config", cfg), dir)
	})
}

// startLoopbackListener starts the listener process (this binary, see
// TestMain) on a free port of 0.0.0.0 and returns the port.
func startLoopbackListener(b *testing.B) int {
	lis, err := net.Listen("tcp", "0.0.0.0:0")
	if err != nil {
		b.Fatal(err)
	}
	port := lis.Addr().(*net.TCPAddr).Port
	lis.Close()
	listener := exec.Command(os.Args[0])
	listener.Env = append(os.Environ(), "FOOTPRINT_LISTENER="+strconv.Itoa(port))
	if err := listener.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { listener.Process.Kill(); listener.Wait() })
	time.Sleep(500 * time.Millisecond)
	return port
}

// measureFootprint starts the daemon (d runs `directord run` with a
// footprintConfig in dir), lets it settle, samples its RSS and CPU for 20 s,
// checks that every backend was up throughout (a failing check costs less
// than a passing one), and reports the figures.
func measureFootprint(b *testing.B, d *exec.Cmd, dir string) {
	d.Stderr = os.Stderr
	if err := d.Start(); err != nil {
		b.Fatal(err)
	}
	defer func() { d.Process.Signal(syscall.SIGTERM); d.Wait() }()
	time.Sleep(10 * time.Second) // learn period and first rounds
	pid := d.Process.Pid
	probes0 := backendsUp(b, filepath.Join(dir, "d.sock"))
	t0 := time.Now()
	b.ResetTimer()
	cpu0, err := procCPU(pid)
	if err != nil {
		b.Fatal(err)
	}
	start := time.Now()
	var peak int64
	for time.Since(start) < 20*time.Second {
		time.Sleep(time.Second)
		rss, err := procRSS(pid)
		if err != nil {
			b.Fatal(err)
		}
		peak = max(peak, rss)
	}
	cpu1, _ := procCPU(pid)
	elapsed := time.Since(start)
	b.StopTimer()
	probes := backendsUp(b, filepath.Join(dir, "d.sock")) - probes0
	share := float64(cpu1-cpu0) / float64(elapsed) * 100
	b.ReportMetric(float64(peak)/(1<<20), "MB-rss")
	b.ReportMetric(share, "%cpu-of-one-core")
	b.ReportMetric(float64(probes)/time.Since(t0).Seconds(), "checks/s")
}

// TestMain turns the test binary into the benchmark's listener process when
// FOOTPRINT_LISTENER names a port (it accepts and closes connections on every
// loopback address until killed), or into its tun responder when
// FOOTPRINT_RESPONDER names a tun device.
func TestMain(m *testing.M) {
	if tun := os.Getenv("FOOTPRINT_RESPONDER"); tun != "" {
		if err := respond(tun, os.Stdout); err != nil {
			fmt.Fprintln(os.Stderr, "responder:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	if port := os.Getenv("FOOTPRINT_LISTENER"); port != "" {
		l, err := net.Listen("tcp", "0.0.0.0:"+port)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				os.Exit(0)
			}
			c.Close()
		}
	}
	os.Exit(m.Run())
}
