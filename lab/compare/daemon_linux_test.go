package compare

import (
	"os/exec"
	"testing"
)

// TestDaemonRSSSplitsAnonymous reads a real process's resident memory and
// its anonymous part: both are found, and the part is no larger than the
// whole.
func TestDaemonRSSSplitsAnonymous(t *testing.T) {
	cmd := exec.Command("sleep", "60")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	d := &daemon{cmd: cmd}
	sum, largest, anon := d.rss()
	if sum <= 0 || anon <= 0 {
		t.Fatalf("rss = %d, anonymous %d: want both read from /proc/%d/status", sum, anon, cmd.Process.Pid)
	}
	// In the VM a program run from the host over 9p has no file pages in
	// RSS at all, so the anonymous part may be the whole.
	if anon > sum || largest > sum {
		t.Errorf("rss = %d, largest %d, anonymous %d: the parts exceed the whole", sum, largest, anon)
	}
}

// TestStatusKB parses /proc/PID/status memory lines and refuses others.
func TestStatusKB(t *testing.T) {
	if kb, ok := statusKB("RssAnon:\t    1234 kB", "RssAnon:"); !ok || kb != 1234 {
		t.Errorf("statusKB = %d, %v; want 1234, true", kb, ok)
	}
	if _, ok := statusKB("RssFile:\t    1234 kB", "RssAnon:"); ok {
		t.Error("statusKB took another field's line")
	}
	if _, ok := statusKB("RssAnon:\t    lots kB", "RssAnon:"); ok {
		t.Error("statusKB took a value that is not a number")
	}
}
