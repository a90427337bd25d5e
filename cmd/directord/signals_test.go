//go:build !vm

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/control/controltest"
)

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
