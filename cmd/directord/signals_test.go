//go:build !vm

package main

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control/controltest"
)

// TestShutdownBudgetSaturates: graceful_shutdown 2000000h plus linger
// 2000000h used to overflow to a negative budget (SIGTERM then exited 1 at
// once, skipping the withdraw). The configuration refuses such values now;
// the arithmetic saturates anyway.
func TestShutdownBudgetSaturates(t *testing.T) {
	huge := 2000000 * time.Hour
	for _, c := range []struct {
		d    config.Director
		want time.Duration
	}{
		{config.Director{GracefulShutdown: 3 * time.Second, Linger: 2 * time.Second}, 15 * time.Second},
		{config.Director{}, shutdownSlack},
		{config.Director{GracefulShutdown: huge, Linger: huge}, math.MaxInt64},
		{config.Director{GracefulShutdown: math.MaxInt64, Linger: 1}, math.MaxInt64},
	} {
		if got := shutdownBudget(c.d, time.Second); got != c.want {
			t.Errorf("shutdownBudget(graceful %s, linger %s) = %s, want %s", c.d.GracefulShutdown, c.d.Linger, got, c.want)
		}
	}
}

// TestShutdownBudgetCoversSlowPasses: a director whose passes take seconds
// gets three of them on top of graceful_shutdown and linger, not the fixed
// slack that a SIGTERM queued behind such passes used to miss.
func TestShutdownBudgetCoversSlowPasses(t *testing.T) {
	d := config.Director{GracefulShutdown: 3 * time.Second, Linger: 2 * time.Second}
	if got := shutdownBudget(d, 8*time.Second); got != 29*time.Second {
		t.Errorf("budget with 8 s passes = %s, want 3 + 2 + 3 x 8 = 29s", got)
	}
	if got := shutdownBudget(d, 10*time.Millisecond); got != 5*time.Second+shutdownSlack {
		t.Errorf("budget with fast passes = %s, want 5s + the slack", got)
	}
}

// TestFIFOConfigKeepsSignals: the configuration file replaced by a FIFO and
// SIGHUP used to block the read forever, and SIGTERM was then ignored (only
// SIGKILL stopped the daemon). The reload is refused at once with what the
// file is, and SIGTERM still stops the daemon gracefully.
func TestFIFOConfigKeepsSignals(t *testing.T) {
	bin := buildDaemon(t)
	dir := controltest.ShortTempDir(t)
	cfgPath := filepath.Join(dir, "directord.yaml")
	cfg := fmt.Sprintf(`director: { name: fifo, announce: none, hold_down: 0s, graceful_shutdown: 0s, linger: 0s, state_dir: %[1]s/state }
api: { socket: %[1]s/d.sock }
metrics: { listen: "" }
services:
  - name: web
    vip: %[2]s
    port: 80
    forwarding: local
    health: { type: tcp, interval: 200ms, timeout: 100ms, rise: 1, fall: 2 }
    backends: [ { address: 127.0.0.1, port: %[3]d } ]
`, dir, vipFor(20), tcpBackend(t))
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	d := startDaemonProc(t, filepath.Join(dir, "d.sock"), bin, "run", "-config", cfgPath)
	d.waitStatus("the VIP advertised", 15*time.Second, vipAdvertised)

	if err := os.Remove(cfgPath); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(cfgPath, 0o600); err != nil {
		t.Fatal(err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload of a FIFO refused", 10*time.Second, func() bool {
		return strings.Contains(d.logs.String(), "it is a named pipe (FIFO), not a regular file")
	})
	if st, err := d.status(); err != nil || !vipAdvertised(st) || st.GetConfig().GetVersion() != 1 {
		t.Errorf("after the refused reload: %v, %v", st.GetConfig(), err)
	}
	if took := d.signalAndWait(syscall.SIGTERM, 10*time.Second); took > 5*time.Second {
		t.Errorf("SIGTERM took %s", took)
	}
	if d.err != nil {
		t.Errorf("exit: %v, want 0", d.err)
	}
}
