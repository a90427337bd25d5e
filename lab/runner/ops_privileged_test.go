//go:build linux && privileged

package runner_test

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

	"github.com/anycast-director/director/lab/nslab"
	"github.com/anycast-director/director/lab/runner"
)

// toy returns node a's running stand-in daemon, after waiting for its start
// line with the version and configuration given.
func toy(t *testing.T, lab *runner.Lab, version, config string) *runner.Proc {
	t.Helper()
	procs := lab.Procs("a")
	if len(procs) != 1 {
		t.Fatalf("node a runs %d role processes, want 1", len(procs))
	}
	p := procs[0]
	if _, _, err := p.WaitOutput("toy v"+version+" started pid", 0, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if out := p.Output(); !strings.Contains(out, "config "+config) {
		t.Fatalf("toy started with another configuration than %q:\n%s", config, out)
	}
	return p
}

// waitProcState waits for a process's state letter to satisfy ok.
func waitProcState(t *testing.T, pid int, what string, ok func(string) bool) {
	t.Helper()
	if _, err := nslab.Wait(context.Background(), 5*time.Second, 20*time.Millisecond, func() error {
		st, err := nslab.ProcState(pid)
		if err != nil || !ok(st) {
			return fmt.Errorf("not %s: state %q (%v)", what, st, err)
		}
		return nil
	}); err != nil {
		t.Fatalf("pid %d: %v", pid, err)
	}
}

// TestPrivilegedRoleOperations drives the operations the lab's scenarios
// perform on a node's daemon, against a stand-in daemon (a shell script that
// prints its version and configuration, reloads on SIGHUP, exits on
// SIGTERM): edit its configuration and reload it, freeze and thaw it,
// restart it gracefully, upgrade it to another binary, kill it and start it
// again, stop it and start it later, and run a command in the node.
func TestPrivilegedRoleOperations(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-a", "testdata/ops/.", dir).CombinedOutput(); err != nil {
		t.Fatalf("copy testdata/ops: %v %s", err, out)
	}
	lab := deploy(t, filepath.Join(dir, "ops.clab.yml"), []runner.Image{{Repository: "example/host"}})
	ctx := context.Background()
	first := toy(t, lab, "1", "one")

	t.Run("Reconfigure", func(t *testing.T) {
		if err := lab.Reconfigure("a", "/etc/lab-toy.conf", []byte("two\n")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := first.WaitOutput("toy v1 reload config two", 0, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		// In place: the bound source changed too, as under containerlab.
		if data, err := os.ReadFile(filepath.Join(dir, "toy.conf")); err != nil || string(data) != "two\n" {
			t.Errorf("bound source after Reconfigure = %q, %v; want the new text", data, err)
		}
	})

	t.Run("FreezeThaw", func(t *testing.T) {
		if err := lab.SignalRole("a", syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		waitProcState(t, first.PID, "frozen", func(s string) bool { return s == "T" })
		if err := lab.SignalRole("a", syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		waitProcState(t, first.PID, "thawed", func(s string) bool { return s != "T" })
	})

	var graceful *runner.Proc
	t.Run("RestartGraceful", func(t *testing.T) {
		if err := lab.Restart(ctx, "a", runner.Stop{Grace: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
		if !first.Exited() || !strings.Contains(first.Output(), "toy v1 stopping") {
			t.Errorf("the old process did not end by SIGTERM (exited %v):\n%s", first.Exited(), first.Output())
		}
		graceful = toy(t, lab, "1", "two") // same binary, same (edited) configuration
		if graceful.PID == first.PID {
			t.Errorf("Restart kept pid %d", first.PID)
		}
	})

	var upgraded *runner.Proc
	t.Run("Upgrade", func(t *testing.T) {
		if err := lab.ReplaceFile(ctx, "a", "/usr/local/lib/lab-toy/toy", filepath.Join(dir, "toy-v2.sh")); err != nil {
			t.Fatal(err)
		}
		if err := lab.Restart(ctx, "a", runner.Stop{Grace: 5 * time.Second}); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(graceful.Output(), "toy v1 stopping") {
			t.Errorf("the v1 process did not stop gracefully:\n%s", graceful.Output())
		}
		upgraded = toy(t, lab, "2", "two")
		// The replacement is the node's alone: the bound source and the
		// machine's files are unchanged.
		if data, err := os.ReadFile(filepath.Join(dir, "toy-v1.sh")); err != nil || !strings.Contains(string(data), "v=1") {
			t.Errorf("toy-v1.sh changed outside the node: %v", err)
		}
		if _, err := os.Stat("/usr/local/lib/lab-toy"); err == nil {
			t.Errorf("/usr/local/lib/lab-toy appeared outside the node")
		}
	})

	t.Run("Kill", func(t *testing.T) {
		if err := lab.Restart(ctx, "a", runner.Stop{Signal: syscall.SIGKILL}); err != nil {
			t.Fatal(err)
		}
		if !upgraded.Exited() || strings.Contains(upgraded.Output(), "stopping") {
			t.Errorf("SIGKILL let the process run its exit handler (exited %v):\n%s", upgraded.Exited(), upgraded.Output())
		}
		toy(t, lab, "2", "two")
	})

	t.Run("StopStart", func(t *testing.T) {
		running := lab.Procs("a")[0]
		if err := lab.StopRole("a", runner.Stop{}); err != nil {
			t.Fatal(err)
		}
		if !running.Exited() || len(lab.Procs("a")) != 0 {
			t.Fatalf("after StopRole: exited %v, role %v", running.Exited(), lab.Procs("a"))
		}
		if err := lab.SignalRole("a", syscall.SIGHUP); err == nil {
			t.Errorf("SignalRole with no role process running: want an error")
		}
		if err := lab.StartRole(ctx, "a"); err != nil {
			t.Fatal(err)
		}
		toy(t, lab, "2", "two")
		if err := lab.StartRole(ctx, "a"); err == nil {
			t.Errorf("StartRole while the role runs: want an error")
		}
	})

	t.Run("Exec", func(t *testing.T) {
		if _, err := lab.Exec(ctx, "a", "sysctl", "-w", "net.ipv4.conf.all.arp_ignore=1"); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, n := range []string{"a", "b"} {
			out, err := lab.Exec(ctx, n, "sysctl", "-n", "net.ipv4.conf.all.arp_ignore")
			if err != nil {
				t.Fatal(err)
			}
			got[n] = strings.TrimSpace(out)
		}
		if got["a"] != "1" || got["b"] != "0" {
			t.Errorf("arp_ignore a=%s b=%s, want 1 in a only", got["a"], got["b"])
		}
	})
}
