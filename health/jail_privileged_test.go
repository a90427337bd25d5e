//go:build linux && privileged

package health

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
)

// cgroupChecker is an exec checker in cgroup mode; it fails the test when
// the jail falls back (this test runs as root), and skips only on a host
// without cgroup v2.
func cgroupChecker(t *testing.T) *execChecker {
	t.Helper()
	if _, err := cgroup2Mount(); err != nil {
		t.Skipf("exec containment by cgroup needs cgroup v2: %v", err)
	}
	x := newExecChecker(nil)
	t.Cleanup(func() { x.Close() })
	if mode := x.jail.Mode(); !strings.HasPrefix(mode, "cgroup ") {
		t.Fatalf("the jail runs in %s, want cgroup mode as root", mode)
	}
	return x
}

// TestPrivilegedExecCgroupContainment: in its own cgroup, no child of a
// check script outlives the probe, however it was started: in the
// background, double-forked, or in a session of its own (setsid), at exit
// or at the timeout.
func TestPrivilegedExecCgroupContainment(t *testing.T) {
	for _, tc := range containmentCases() {
		t.Run(tc.name, func(t *testing.T) { runContainment(t, cgroupChecker(t), tc) })
	}
}

// TestPrivilegedExecProbesDieWithScheduler: when the scheduler stops (the
// daemon exits) while a probe runs, the probe's processes, setsid ones
// included, are killed and the jail's cgroup removed.
func TestPrivilegedExecProbesDieWithScheduler(t *testing.T) {
	cgroupChecker(t) // skip without cgroup v2
	rec := newPIDRecorder(t)
	s := NewScheduler(nil, Options{})
	x := s.checkers[check.Exec].(*execChecker)
	// The script outlasts the timeout, so Run stops while it runs.
	s.Update([]Target{{Addr: loopback, Port: 1, Spec: check.Spec{Type: check.Exec, Interval: 2 * time.Second,
		Timeout: 1900 * time.Millisecond, Command: rec.script(`setsid sleep 3604 >/dev/null 2>&1 & echo $! >> "$REC"; sleep 30`)}}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	rec.waitRecorded(1)
	base := x.jail.Mode()
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if live := rec.alive(); len(live) > 0 {
		t.Errorf("processes outlived the scheduler: %s", describe(live))
	}
	if dir := strings.TrimPrefix(base, "cgroup "); dirExists(dir) {
		t.Errorf("the jail's cgroup %s is left after Run", dir)
	}
}

// TestPrivilegedExecStaleCgroupRemoved: the probe cgroup of a directord that
// died without cleaning up (SIGKILL) is killed and removed, processes and
// all, when the next one sets up its jail.
func TestPrivilegedExecStaleCgroupRemoved(t *testing.T) {
	own, err := ownCgroup()
	if err != nil {
		t.Skipf("exec containment by cgroup needs cgroup v2: %v", err)
	}
	gone := exec.Command("true")
	if err := gone.Run(); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(own, fmt.Sprintf("%s%d-deadbeef", jailPrefix, gone.Process.Pid))
	cell := filepath.Join(stale, "p1")
	if err := os.MkdirAll(cell, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { removeGroup(cell); removeGroup(stale) })
	fd, err := os.Open(cell)
	if err != nil {
		t.Fatal(err)
	}
	defer fd.Close()
	left := exec.Command("sleep", "3605")
	left.SysProcAttr = &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(fd.Fd()), Setsid: true}
	if err := left.Start(); err != nil {
		t.Fatal(err)
	}
	go left.Wait() // reap it once killed

	cgroupChecker(t) // sets up a new jail, which cleans up
	deadline := time.Now().Add(3 * time.Second)
	for !deadOrZombie(left.Process.Pid) {
		if time.Now().After(deadline) {
			left.Process.Kill()
			t.Fatalf("the dead daemon's probe process %d still runs", left.Process.Pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if dirExists(stale) {
		t.Errorf("the dead daemon's cgroup %s is still there", stale)
	}
}
