//go:build !vm

package main

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"context"
)

// listenNotify opens a real unixgram socket playing systemd's notify socket.
func listenNotify(t *testing.T) (string, *net.UnixConn) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify")
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return path, c
}

// notifySocket is listenNotify with the datagrams delivered on a channel.
func notifySocket(t *testing.T) (string, <-chan string) {
	t.Helper()
	path, c := listenNotify(t)
	msgs := make(chan string, 1024)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			msgs <- string(buf[:n])
		}
	}()
	return path, msgs
}

// readWithin reads one datagram, or returns "" after d.
func readWithin(c *net.UnixConn, d time.Duration) string {
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(d))
	n, err := c.Read(buf)
	if err != nil {
		return ""
	}
	return string(buf[:n])
}

// expectMessage waits for a datagram starting with prefix, skipping others
// (watchdog pings) unless they are listed in forbid.
func expectMessage(t *testing.T, msgs <-chan string, prefix string, forbid ...string) string {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case m := <-msgs:
			if strings.HasPrefix(m, prefix) {
				return m
			}
			for _, f := range forbid {
				if strings.HasPrefix(m, f) {
					t.Fatalf("got %q while waiting for %q", m, prefix)
				}
			}
		case <-deadline:
			t.Fatalf("no %q message within 20s", prefix)
		}
	}
}

// TestServiceManagerNotifications runs the daemon against a real notify
// socket as systemd would: READY=1 once the first pass is done (the VIP is
// already advertised by then), RELOADING=1 then READY=1 around SIGHUP,
// watchdog pings, STOPPING=1 on SIGTERM.
func TestServiceManagerNotifications(t *testing.T) {
	bin := buildDaemon(t)
	dir := t.TempDir()
	sock, msgs := notifySocket(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfgPath := filepath.Join(dir, "directord.yaml")
	cfg := fmt.Sprintf(`director: { name: n1, announce: none, hold_down: 0s, graceful_shutdown: 0s, linger: 0s, state_dir: %[1]s/state }
api: { socket: %[1]s/d.sock }
metrics: { listen: %s }
services:
  - name: self
    vip: 127.0.0.10
    port: 80
    forwarding: local
    health: { type: tcp, interval: 200ms, rise: 1, fall: 1 }
    backends: [ { address: 127.0.0.1, port: %s } ]
`, dir, metrics, metrics[strings.LastIndex(metrics, ":")+1:])
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+sock, "WATCHDOG_USEC=400000")
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("directord log:\n%s", logs.String())
		}
	})
	ready := expectMessage(t, msgs, "READY=1", "STOPPING=1")
	if !strings.Contains(ready, "STATUS=config version 1 (") {
		t.Errorf("READY message %q lacks the status line", ready)
	}
	if page := scrape(metrics); !strings.Contains(page, "directord_reconcile_last_pass_timestamp_seconds") {
		t.Errorf("READY=1 before the first pass")
	}
	expectMessage(t, msgs, "WATCHDOG=1")

	cfg = strings.Replace(cfg, "hold_down: 0s", "hold_down: 100ms", 1)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	expectMessage(t, msgs, "RELOADING=1\nMONOTONIC_USEC=", "READY=1")
	if r := expectMessage(t, msgs, "READY=1"); !strings.Contains(r, "STATUS=config version 2") {
		t.Errorf("READY after the reload is %q, want config version 2", r)
	}
	// A rejected reload still ends with READY=1, and says so.
	os.WriteFile(cfgPath, []byte(cfg+"  - name: [broken\n"), 0o644)
	cmd.Process.Signal(syscall.SIGHUP)
	expectMessage(t, msgs, "RELOADING=1", "READY=1")
	if r := expectMessage(t, msgs, "READY=1"); !strings.Contains(r, "reload rejected") {
		t.Errorf("READY after a rejected reload is %q, want it to say so", r)
	}

	cmd.Process.Signal(syscall.SIGTERM)
	// graceful_shutdown 0s + linger 0s + four passes of milliseconds + the
	// 10 s slack for the Cease.
	s := expectMessage(t, msgs, "STOPPING=1")
	_, ext, _ := strings.Cut(s, "EXTEND_TIMEOUT_USEC=")
	var usec int64
	if _, err := fmt.Sscanf(ext, "%d", &usec); err != nil || usec < 10_000_000 || usec > 11_000_000 {
		t.Errorf("STOPPING message %q does not extend the stop timeout to the shutdown budget (10 s and a few passes)", s)
	}
	if err := cmd.Wait(); err != nil {
		t.Errorf("exit: %v", err)
	}
}

// TestWatchdogStarvesWhileWedged: the watchdog is fed only while the loop is
// not wedged, through a real notify socket.
func TestWatchdogStarvesWhileWedged(t *testing.T) {
	sock, conn := listenNotify(t)
	t.Setenv("NOTIFY_SOCKET", sock)
	t.Setenv("WATCHDOG_USEC", "100000") // fed every 50ms
	t.Setenv("WATCHDOG_PID", "")
	logs := &syncBuffer{}
	m := newManager(slog.New(slog.NewTextHandler(logs, nil)))
	var wedged atomic.Bool
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); m.feedWatchdog(ctx, wedged.Load) }()
	defer func() { cancel(); <-done }()

	if got := readWithin(conn, 5*time.Second); got != "WATCHDOG=1" {
		t.Fatalf("first message %q, want WATCHDOG=1", got)
	}
	wedged.Store(true)
	waitFor(t, "the feeder to notice the wedge", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "no longer feeding the systemd watchdog")
	})
	// A send completes into the socket's queue before the feeder goes on
	// to log, so what it sent before noticing is queued now: drain it.
	for readWithin(conn, time.Millisecond) != "" {
	}
	if got := readWithin(conn, 500*time.Millisecond); got != "" { // ten feeding periods
		t.Fatalf("got %q while the loop is wedged", got)
	}
	wedged.Store(false)
	if got := readWithin(conn, 5*time.Second); got != "WATCHDOG=1" {
		t.Fatalf("after recovery got %q, want WATCHDOG=1", got)
	}
}
