package health

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
)

// fallbackChecker is an exec checker forced into process-group mode, as on
// a host without a writable cgroup v2 hierarchy.
func fallbackChecker(t *testing.T) *execChecker {
	t.Helper()
	x := newExecChecker(nil)
	x.jail.ready, x.jail.why = true, "forced by the test"
	t.Cleanup(func() { x.Close() })
	return x
}

// pidRecorder gives scripts a file to append the PIDs of their children to,
// and kills whatever is still alive at the end of the test.
type pidRecorder struct {
	t    *testing.T
	file string
}

func newPIDRecorder(t *testing.T) *pidRecorder {
	r := &pidRecorder{t: t, file: filepath.Join(t.TempDir(), "pids")}
	t.Cleanup(func() {
		for _, pid := range r.pids() {
			if !deadOrZombie(pid) {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
	})
	return r
}

// script runs body, in which $REC appends a PID to the record.
func (r *pidRecorder) script(body string) []string {
	return []string{"/bin/sh", "-c", "REC='" + r.file + "'; " + body}
}

// pids returns the recorded PIDs.
func (r *pidRecorder) pids() []int {
	raw, _ := os.ReadFile(r.file)
	var out []int
	for _, f := range strings.Fields(string(raw)) {
		if pid, err := strconv.Atoi(f); err == nil {
			out = append(out, pid)
		}
	}
	return out
}

// waitRecorded waits until n PIDs are recorded.
func (r *pidRecorder) waitRecorded(n int) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for len(r.pids()) < n {
		if time.Now().After(deadline) {
			r.t.Fatalf("the script recorded %d PIDs, want %d", len(r.pids()), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// alive returns the recorded PIDs still running 2 s (at most) after the call.
func (r *pidRecorder) alive() []int {
	deadline := time.Now().Add(2 * time.Second)
	for {
		var live []int
		for _, pid := range r.pids() {
			if !deadOrZombie(pid) {
				live = append(live, pid)
			}
		}
		if len(live) == 0 || time.Now().After(deadline) {
			return live
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// containmentCase is a script whose children must all be gone once the probe
// returned. escapesGroup marks children that a process group cannot catch.
type containmentCase struct {
	name         string
	body         string
	timeout      time.Duration
	wantErr      string // substring; "" passes
	escapesGroup bool
}

// containmentCases are the ways a check script leaves processes behind. The
// timeouts leave a loaded machine time to start the shell and record its
// child before the probe ends.
func containmentCases() []containmentCase {
	return []containmentCase{
		{name: "background child, exit 0 (issue 12: 42 leaked in 40 s)",
			body: `sleep 3602 >/dev/null 2>&1 & echo $! >> "$REC"; exit 0`, timeout: 2 * time.Second},
		{name: "background child holding the output, exit 0",
			body: `sleep 3602 & echo $! >> "$REC"; exit 0`, timeout: 2 * time.Second},
		{name: "double fork, exit 1",
			body: `(sleep 3602 >/dev/null 2>&1 & echo $! >> "$REC") ; exit 1`, timeout: 2 * time.Second, wantErr: "exit status 1"},
		{name: "background child at the timeout",
			body: `sleep 3602 & echo $! >> "$REC"; sleep 30`, timeout: 1500 * time.Millisecond, wantErr: "timeout after 1.5s"},
		{name: "setsid child, exit 0",
			body: `setsid sleep 3603 >/dev/null 2>&1 & echo $! >> "$REC"; exit 0`, timeout: 2 * time.Second, escapesGroup: true},
		{name: "setsid child at the timeout",
			body: `setsid sleep 3603 >/dev/null 2>&1 & echo $! >> "$REC"; sleep 30`, timeout: 1500 * time.Millisecond,
			wantErr: "timeout after 1.5s", escapesGroup: true},
	}
}

// runContainment runs tc with c and checks the result and that no child
// outlives the probe.
func runContainment(t *testing.T, c Checker, tc containmentCase) {
	t.Helper()
	rec := newPIDRecorder(t)
	tg := Target{Addr: loopback, Port: 1, Spec: check.Spec{Type: check.Exec, Timeout: tc.timeout, Command: rec.script(tc.body)}}
	got, took := runCheck(t, c, tg)
	if !strings.Contains(got, tc.wantErr) || (tc.wantErr == "") != (got == "") {
		t.Errorf("error %q, want %q", got, tc.wantErr)
	}
	if took > tc.timeout+2*time.Second {
		t.Errorf("the probe took %s: a child held it beyond its %s timeout", took, tc.timeout)
	}
	if len(rec.pids()) == 0 {
		t.Fatal("the script recorded no child")
	}
	if live := rec.alive(); len(live) > 0 {
		t.Errorf("processes %v outlived the probe", live)
	}
}

// TestExecFallbackKillsTheProcessGroup: without cgroups, every child that
// stays in the probe's process group is killed when the probe ends, by exit
// or timeout (before, only at the timeout). setsid children escape this
// mode: TestPrivilegedExecCgroupContainment covers them.
func TestExecFallbackKillsTheProcessGroup(t *testing.T) {
	for _, tc := range containmentCases() {
		if tc.escapesGroup {
			continue
		}
		t.Run(tc.name, func(t *testing.T) { runContainment(t, fallbackChecker(t), tc) })
	}
}

// TestExecJailModeSaysWhy: the fallback names its reason.
func TestExecJailModeSaysWhy(t *testing.T) {
	x := fallbackChecker(t)
	if got := x.jail.Mode(); got != "process group (forced by the test)" {
		t.Errorf("Mode = %q", got)
	}
}

// TestExecCheckerSurvivesCancel: a probe cancelled by its caller (the
// scheduler stopping) kills its processes too.
func TestExecCheckerSurvivesCancel(t *testing.T) {
	rec := newPIDRecorder(t)
	x := fallbackChecker(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	tg := Target{Addr: loopback, Port: 1, Spec: check.Spec{Type: check.Exec, Timeout: 10 * time.Second,
		Command: rec.script(`sleep 3602 & echo $! >> "$REC"; sleep 30`)}}
	go func() { done <- x.Check(ctx, tg) }()
	rec.waitRecorded(1)
	cancel()
	if err := <-done; err == nil || !strings.Contains(err.Error(), "canceled") {
		t.Errorf("cancelled probe: %v, want canceled", err)
	}
	if live := rec.alive(); len(live) > 0 {
		t.Errorf("processes %v outlived the cancelled probe", live)
	}
}

// describe renders PIDs with their command lines for failure messages.
func describe(pids []int) string {
	var parts []string
	for _, pid := range pids {
		cmd, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		parts = append(parts, fmt.Sprintf("%d (%s)", pid, strings.ReplaceAll(string(cmd), "\x00", " ")))
	}
	return strings.Join(parts, ", ")
}
