//go:build linux && privileged

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// execLeakConfig is a local service decided by an exec check whose script
// leaves a setsid'd child behind (recording its PID) and then outlasts the
// probe.
func execLeakConfig(dir, script string) string {
	return fmt.Sprintf(`director: { name: ex, announce: none, hold_down: 0s, graceful_shutdown: 0s, linger: 0s, state_dir: %[1]s/state }
api: { socket: %[1]s/d.sock }
metrics: { listen: "" }
services:
  - name: web
    vip: 127.0.0.10
    port: 80
    forwarding: local
    health: { type: exec, command: [/bin/sh, %s], interval: 2s, timeout: 1900ms, rise: 1, fall: 1 }
`, dir, script)
}

// recordedPIDs reads the PIDs the check script recorded.
func recordedPIDs(t *testing.T, file string) []int {
	t.Helper()
	raw, _ := os.ReadFile(file)
	var out []int
	for _, f := range strings.Fields(string(raw)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// running reports whether pid runs (not gone, not a zombie).
func running(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] != 'Z'
}

// TestPrivilegedExecProbesDieWithTheDaemon: a check script's setsid'd
// child (which a process-group kill cannot reach) dies with its probe's
// cgroup when directord stops on SIGTERM mid-probe; after a SIGKILL, which
// leaves it running, the next directord kills it when it starts.
func TestPrivilegedExecProbesDieWithTheDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("exec containment by cgroup needs root; run it with make test-privileged")
	}
	bin := buildDaemon(t)
	dir := t.TempDir()
	rec := filepath.Join(dir, "pids")
	script := filepath.Join(dir, "check.sh")
	body := fmt.Sprintf("setsid sleep 3606 >/dev/null 2>&1 &\necho $! >> %s\nsleep 30\n", rec)
	if err := os.WriteFile(script, []byte(body), 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "directord.yaml")
	if err := os.WriteFile(cfg, []byte(execLeakConfig(dir, script)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for _, pid := range recordedPIDs(t, rec) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	})
	var logs syncBuffer
	waitChild := func(n int) int {
		waitFor(t, fmt.Sprintf("probe %d to start its child", n), 10*time.Second, func() bool { return len(recordedPIDs(t, rec)) >= n })
		return recordedPIDs(t, rec)[n-1]
	}

	d := startDaemon(t, bin, cfg, &logs)
	child := waitChild(1)
	d.signal(syscall.SIGTERM)
	if err := d.wait(10 * time.Second); err != nil {
		t.Fatalf("directord exit after SIGTERM: %v", err)
	}
	waitFor(t, "the probe's setsid child to die with directord", 3*time.Second, func() bool { return !running(child) })
	if strings.Contains(logs.String(), "without cgroup containment") {
		t.Fatalf("directord ran exec checks without cgroups as root")
	}

	d = startDaemon(t, bin, cfg, &logs)
	child = waitChild(2)
	d.signal(syscall.SIGKILL)
	d.wait(10 * time.Second)
	if !running(child) {
		t.Fatalf("the child %d died with a SIGKILLed directord: the restart below would prove nothing", child)
	}
	d = startDaemon(t, bin, cfg, &logs)
	waitFor(t, "the restarted directord to kill the dead one's probe child", 5*time.Second, func() bool { return !running(child) })
}
