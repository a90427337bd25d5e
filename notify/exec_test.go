package notify

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
)

// TestExecHookEnvironmentAndStdin: the hook sees the documented variables,
// not the daemon's environment, and the message as JSON on stdin.
func TestExecHookEnvironmentAndStdin(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "hook.sh")
	out := filepath.Join(dir, "out")
	os.WriteFile(script, []byte("#!/bin/sh\nenv > "+out+".env\ncat > "+out+".json\n"), 0o755)
	t.Setenv("DIRECTOR_TEST_SECRET", "must-not-leak")
	n := runNotifier(t, config.Notify{GroupWindow: 20 * time.Millisecond, Burst: 5, Every: time.Minute,
		Exec: []config.ExecHook{{Delivery: quick(), Command: []string{script}}}})
	n.Submit(Event{Director: "d1", Time: time.Now(), Kind: "vip", Subject: "198.18.0.10", From: "advertised", To: "withdrawn",
		Reason: "below min_healthy 0/2"})
	waitUntil(t, "the hook's output", func() bool { return n.Stats()["exec "+script].Sent == 1 })
	env, _ := os.ReadFile(out + ".env")
	for _, want := range []string{"DIRECTOR_NAME=d1", "DIRECTOR_NOTIFY_COUNT=1", "DIRECTOR_EVENT_KIND=vip",
		"DIRECTOR_EVENT_SUBJECT=198.18.0.10", "DIRECTOR_EVENT_FROM=advertised", "DIRECTOR_EVENT_TO=withdrawn",
		"DIRECTOR_EVENT_REASON=below min_healthy 0/2", "DIRECTOR_NOTIFY_SUMMARY=[d1] vip 198.18.0.10 withdrawn"} {
		if !strings.Contains(string(env), want+"\n") {
			t.Errorf("environment lacks %s:\n%s", want, env)
		}
	}
	if strings.Contains(string(env), "must-not-leak") {
		t.Errorf("the daemon's environment leaked into the hook")
	}
	var m Message
	data, _ := os.ReadFile(out + ".json")
	if err := json.Unmarshal(data, &m); err != nil || len(m.Entries) != 1 || m.Entries[0].To != "withdrawn" {
		t.Errorf("stdin = %s (%v)", data, err)
	}
}

// TestExecHookTimeoutKillsItsProcessGroup: a hook that hangs, and a child it
// left behind, are killed at the timeout; the failure is retried.
func TestExecHookTimeoutKillsItsProcessGroup(t *testing.T) {
	dir := t.TempDir()
	script := filepath.Join(dir, "hang.sh")
	pids := filepath.Join(dir, "pids")
	os.WriteFile(script, []byte("#!/bin/sh\nsleep 300 &\necho $! >> "+pids+"\nsleep 300\n"), 0o755)
	d := quick()
	d.Timeout, d.MaxAttempts = time.Second, 2
	n := runNotifier(t, config.Notify{GroupWindow: 20 * time.Millisecond, Burst: 5, Every: time.Minute,
		Exec: []config.ExecHook{{Delivery: d, Command: []string{script}}}})
	start := time.Now()
	n.Submit(down("tcp 10.0.2.21:80"))
	waitUntil(t, "two timed-out attempts", func() bool { return n.Stats()["exec "+script].Failed == 1 })
	if took := time.Since(start); took > 8*time.Second {
		t.Errorf("two attempts of 1s took %s", took)
	}
	if s := n.Stats()["exec "+script]; s.Attempts != 2 || !strings.Contains(s.LastError, "killed at the timeout") {
		t.Errorf("stats = %+v", s)
	}
	data, _ := os.ReadFile(pids)
	lines := strings.Fields(string(data))
	if len(lines) == 0 { // each attempt had a second to start its child
		t.Fatalf("the hook started no child within its timeout")
	}
	for _, l := range lines {
		pid, _ := strconv.Atoi(l)
		waitUntil(t, "the hook's child to be gone", func() bool {
			return syscall.Kill(pid, 0) == syscall.ESRCH || isZombie(pid)
		})
	}
}

// isZombie reports whether pid has exited and waits for its parent to reap it.
func isZombie(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return true
	}
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:]))
	return len(f) > 0 && f[0] == "Z"
}
