//go:build linux && privileged

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedStaleMarksReleasedAtStart: a director announced a VIP with
// announce: kernel (a local route as binding, a route in table 200, both
// with protocol 250) and was killed; it starts again with other marks
// (announce: none, protocol 251). The state directory remembers the old
// marks, so the old binding and route go at start instead of staying
// forever (the route would keep attracting traffic through the local
// routing daemon); an address and a route without the mark stay.
func TestPrivilegedStaleMarksReleasedAtStart(t *testing.T) {
	lab := netlab.New(t)
	bin := filepath.Join(lab.Dir(), "directord")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	ns := lab.Namespace("marks")
	ns.MustRun("ip", "link", "set", "lo", "up")
	ns.MustRun("ip", "addr", "add", "10.9.9.9/32", "dev", "lo")                                        // an operator's address
	ns.MustRun("ip", "route", "add", "198.18.7.99/32", "dev", "lo", "table", "200", "proto", "static") // an operator's route
	dir := lab.Dir()
	write := func(announce string, protocol int) string {
		path := filepath.Join(dir, fmt.Sprintf("directord-%s.yaml", announce))
		cfg := fmt.Sprintf(`director: { name: m1, announce: %s, hold_down: 0s, graceful_shutdown: 0s, linger: 0s, state_dir: %s/state }
api: { socket: %s/d.sock }
metrics: { listen: 127.0.0.1:9481 }
kernel: { table: 200, protocol: %d }
services:
  - name: self
    vip: 198.18.7.10
    port: 9481
    forwarding: local
    health: { type: tcp, interval: 200ms, rise: 1, fall: 1 }
    backends: [ { address: 127.0.0.1 } ]
`, announce, dir, dir, protocol)
		if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	routes := func(args ...string) string {
		return strings.TrimSpace(ns.MustRun(append([]string{"ip", "-4", "route", "show"}, args...)...))
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; table 200: %q; local: %q", what, routes("table", "200"), routes("table", "local"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	}

	p := ns.Start("directord", nil, bin, "run", "-config", write("kernel", 250))
	waitFor("the VIP route in table 200", func() bool {
		return strings.Contains(routes("table", "200", "proto", "250"), "198.18.7.10")
	})
	if got := routes("table", "local", "proto", "250"); !strings.Contains(got, "198.18.7.10") {
		t.Fatalf("the VIP is not bound with a local route of protocol 250: %q", got)
	}
	p.Signal(syscall.SIGKILL)
	p.Wait(10 * time.Second)

	p = ns.Start("directord", nil, bin, "run", "-config", write("none", 251))
	defer func() {
		p.Signal(syscall.SIGTERM)
		p.Wait(10 * time.Second)
		if t.Failed() {
			t.Logf("directord log:\n%s", p.Output())
		}
	}()
	waitFor("the VIP bound with protocol 251", func() bool {
		return strings.Contains(routes("table", "local", "proto", "251"), "198.18.7.10") ||
			strings.Contains(ns.MustRun("ip", "-4", "addr", "show", "dev", "lo"), "198.18.7.10/32")
	})
	if got := routes("table", "200", "proto", "250"); got != "" {
		t.Errorf("the route of the previous marks is still there: %q", got)
	}
	if got := routes("table", "local", "proto", "250"); got != "" {
		t.Errorf("the binding of the previous marks is still there: %q", got)
	}
	if got := routes("table", "200"); !strings.Contains(got, "198.18.7.99") {
		t.Errorf("the operator's route went too: table 200 has %q", got)
	}
	if got := ns.MustRun("ip", "-4", "addr", "show", "dev", "lo"); !strings.Contains(got, "10.9.9.9/32") {
		t.Errorf("the operator's address went too:\n%s", got)
	}
	if out := p.Output(); !strings.Contains(out, "withdrawing routes made with the previous marks") ||
		!strings.Contains(out, "unbinding VIPs bound with the previous marks") {
		t.Errorf("the log does not say what was released")
	}
}

// TestPrivilegedRollbackRewritesBindMountedFile: a configuration file bound
// into a container (a mount point) cannot be replaced by a rename (EBUSY);
// a rollback rewrites it in place and keeps the replaced version as the
// backup. The bind mount lives in a mount namespace of this test's own
// thread, which is thrown away when the test ends.
func TestPrivilegedRollbackRewritesBindMountedFile(t *testing.T) {
	dir := t.TempDir()
	src := filepath.Join(dir, "host.yaml")
	target := filepath.Join(dir, "etc", "directord.yaml")
	if err := os.MkdirAll(filepath.Dir(target), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{src, target} {
		if err := os.WriteFile(f, []byte("version: new\n"), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	done := make(chan error, 1)
	go func() {
		// The thread is never unlocked: Go ends it with the goroutine,
		// and its mount namespace with it.
		runtime.LockOSThread()
		done <- func() error {
			if err := syscall.Unshare(syscall.CLONE_NEWNS); err != nil {
				return fmt.Errorf("unshare: %w", err)
			}
			if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
				return fmt.Errorf("make mounts private: %w", err)
			}
			if err := syscall.Mount(src, target, "", syscall.MS_BIND, ""); err != nil {
				return fmt.Errorf("bind: %w", err)
			}
			file, backup, err := replaceConfigFile(target, []byte("version: old\n"), time.Now())
			if err != nil {
				return fmt.Errorf("replaceConfigFile: %w", err)
			}
			if file != target || backup == "" {
				return fmt.Errorf("wrote %q with backup %q; want %s and a backup", file, backup, target)
			}
			if got, _ := os.ReadFile(target); string(got) != "version: old\n" {
				return fmt.Errorf("the bound file holds %q", got)
			}
			if got, _ := os.ReadFile(backup); string(got) != "version: new\n" {
				return fmt.Errorf("the backup holds %q", got)
			}
			return nil
		}()
	}()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(src); string(got) != "version: old\n" {
		t.Errorf("the host's file (the bind's source) holds %q, want the rolled-back version", got)
	}
}
