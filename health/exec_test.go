package health

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/health/check"
)

func TestCheckExec(t *testing.T) {
	tests := []struct {
		name    string
		command []string
		wantErr string
	}{
		{name: "exit 0 with target in env", command: []string{"/bin/sh", "-c", `test "$DIRECTOR_TARGET_ADDR" = 127.0.0.1 && test "$DIRECTOR_TARGET_PORT" = 8080`}},
		{name: "env mismatch fails", command: []string{"/bin/sh", "-c", `test "$DIRECTOR_TARGET_PORT" = 9999`}, wantErr: "exec /bin/sh: exit status 1"},
		{name: "exit 1 with output", command: []string{"/bin/sh", "-c", "echo backend says; echo no >&2; exit 3"}, wantErr: "exec /bin/sh: exit status 3: backend says no"},
		{name: "output is bounded", command: []string{"/bin/sh", "-c", "head -c 2000 /dev/zero | tr '\\0' x; exit 1"},
			wantErr: "exec /bin/sh: exit status 1: " + strings.Repeat("x", maxExecOutput) + " ... (1488 more bytes)"},
		{name: "timeout", command: []string{"/bin/sh", "-c", "echo started; sleep 5"}, wantErr: "exec /bin/sh: timeout after 300ms, its processes killed: started"},
		{name: "missing binary", command: []string{"/nonexistent/check"}, wantErr: "exec /nonexistent/check: no such file or directory"},
		{name: "no command", wantErr: "exec check has no command; set the check's command"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			// A generous timeout but for the timeout case: a loaded machine
			// can take more than 300 ms to run a shell pipeline.
			timeout := 5 * time.Second
			if tc.name == "timeout" {
				timeout = 300 * time.Millisecond
			}
			tg := Target{Addr: loopback, Port: 8080, Spec: check.Spec{Type: check.Exec, Timeout: timeout, Command: tc.command}}
			got, took := runCheck(t, fallbackChecker(t), tg)
			if diff := cmp.Diff(tc.wantErr, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if took > timeout+2*time.Second {
				t.Errorf("check took %s, want it bounded by the %s timeout", took, timeout)
			}
		})
	}
}

func TestCheckExecKillsProcessGroup(t *testing.T) {
	// The script starts a grandchild that would outlive a kill of the shell
	// alone; the timeout must take the whole group.
	pidFile := filepath.Join(t.TempDir(), "child.pid")
	script := fmt.Sprintf("sleep 30 & echo $! > %s; wait", pidFile)
	tg := Target{Addr: loopback, Port: 1, Spec: check.Spec{Type: check.Exec, Timeout: 300 * time.Millisecond, Command: []string{"/bin/sh", "-c", script}}}
	got, _ := runCheck(t, fallbackChecker(t), tg)
	if !strings.Contains(got, "timeout after 300ms, its processes killed") {
		t.Fatalf("error = %q, want a timeout", got)
	}
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		t.Fatalf("script did not record its child: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(raw)))
	if err != nil {
		t.Fatal(err)
	}
	// Reaping is up to whoever adopts the orphan; a zombie is dead enough.
	deadline := time.Now().Add(2 * time.Second)
	for !deadOrZombie(pid) {
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d still running after the probe timed out", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deadOrZombie reports whether pid no longer runs.
func deadOrZombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return true
	}
	// Format: pid (comm) state ...
	s := string(stat)
	i := strings.LastIndexByte(s, ')')
	return i > 0 && len(s) > i+2 && s[i+2] == 'Z'
}
