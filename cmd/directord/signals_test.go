//go:build !vm

package main

import (
	"os"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFIFOConfigKeepsSignals: the configuration file replaced by a FIFO and
// SIGHUP used to block the read forever, and SIGTERM was then ignored (only
// SIGKILL stopped the daemon). The reload is refused at once with what the
// file is, and SIGTERM still stops the daemon gracefully.
func TestFIFOConfigKeepsSignals(t *testing.T) {
	d, _, cfgPath, _ := startLocalDaemon(t, "fifo", 20, "interval: 200ms, timeout: 100ms")

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
