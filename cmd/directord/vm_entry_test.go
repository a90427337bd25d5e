//go:build linux && vm

package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/internal/buildinfo"
	"github.com/anycast-director/director/lab/netlab"
)

// These tests run as root inside the VM (make test-vm), where the kernel has
// IPVS. A `go build` of directord inside the emulated VM takes more than a
// minute, so the test binary is the daemon: started with entryEnv set, it
// runs TestVMEntryPoint only, which hands the arguments after "--" to run(),
// main's body. directorctl is built once per run (see ctlBinary).

// entryEnv makes the test binary behave as the directord command.
const entryEnv = "DIRECTORD_VM_ENTRY"

// selfCommand returns the argv that runs `directord ARGS...` through this
// test binary. A child that outlives its test dies after five minutes.
func selfCommand(t testing.TB, args ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find the test binary to re-execute as directord: %v", err)
	}
	return append([]string{exe, "-test.run=^TestVMEntryPoint$", "-test.timeout=5m", "--"}, args...)
}

// TestVMEntryPoint is the directord command when entryEnv is set. Otherwise
// it checks that re-executing the test binary really reaches the command
// dispatcher: the version, and a usage error for an unknown command.
func TestVMEntryPoint(t *testing.T) {
	if os.Getenv(entryEnv) == "1" {
		os.Exit(run(flag.Args(), os.Stdout, os.Stderr))
	}
	for _, tc := range []struct {
		args       []string
		wantCode   int
		wantStdout string
		wantStderr string
	}{
		{args: []string{"version"}, wantCode: exitOK, wantStdout: "directord " + buildinfo.Get().String()},
		{args: []string{"no-such-command"}, wantCode: exitUsage, wantStderr: `unknown command "no-such-command"`},
	} {
		argv := selfCommand(t, tc.args...)
		cmd := exec.Command(argv[0], argv[1:]...)
		cmd.Env = append(os.Environ(), entryEnv+"=1")
		var stdout, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		code := exitCode(t, cmd.Run())
		if code != tc.wantCode {
			t.Errorf("directord %v: exit %d, want %d; stderr:\n%s", tc.args, code, tc.wantCode, stderr.String())
		}
		if tc.wantStdout != "" && stdout.String() != tc.wantStdout {
			t.Errorf("directord %v: stdout %q, want %q", tc.args, stdout.String(), tc.wantStdout)
		}
		if !strings.Contains(stderr.String(), tc.wantStderr) {
			t.Errorf("directord %v: stderr lacks %q:\n%s", tc.args, tc.wantStderr, stderr.String())
		}
	}
}

// exitCode turns the error of a finished command into its exit status.
func exitCode(t testing.TB, err error) int {
	t.Helper()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ee):
		return ee.ExitCode()
	}
	t.Fatalf("run: %v", err)
	return -1
}

// directordIn runs `directord ARGS...` to completion inside ns and returns
// its stdout, stderr and exit status.
func directordIn(t testing.TB, ns *netlab.NS, args ...string) (string, string, int) {
	t.Helper()
	argv := append([]string{"netns", "exec", ns.Name}, selfCommand(t, args...)...)
	cmd := exec.Command("ip", argv...)
	cmd.Env = append(os.Environ(), entryEnv+"=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatalf("start directord %v in %s: %v", args, ns.Name, err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return stdout.String(), stderr.String(), exitCode(t, err)
	case <-time.After(time.Minute):
		cmd.Process.Kill()
		<-done
		t.Fatalf("directord %v in %s did not finish within a minute", args, ns.Name)
	}
	return "", "", -1
}

// loAddrs lists the IPv4 addresses on lo of ns ("198.18.77.10/32"), in the
// kernel's order, so a duplicate would show.
func loAddrs(t testing.TB, ns *netlab.NS) []string {
	t.Helper()
	var out []string
	for _, line := range strings.Split(ns.MustRun("ip", "-4", "-o", "addr", "show", "dev", "lo"), "\n") {
		f := strings.Fields(line)
		for i := 0; i+1 < len(f); i++ {
			if f[i] == "inet" {
				out = append(out, f[i+1])
			}
		}
	}
	return out
}

// sysctlIn reads one sysctl inside ns.
func sysctlIn(t testing.TB, ns *netlab.NS, key string) string {
	t.Helper()
	return strings.TrimSpace(ns.MustRun("sysctl", "-n", key))
}

// TestVMRealServerCommand drives `directord realserver` in a namespace: it
// binds the VIPs on lo and sets the ARP sysctls, a second run changes
// nothing (the recorded previous values stay the originals), -undo removes
// only its own addresses and restores the recorded values, and a second
// -undo is a no-op.
func TestVMRealServerCommand(t *testing.T) {
	lab := netlab.New(t)
	ns := lab.Namespace("rs")
	state := filepath.Join(lab.Dir(), "realserver.json")
	// Non-default starting values, so a restore to defaults would show.
	ns.Sysctl("net.ipv4.conf.all.arp_ignore", "0")
	ns.Sysctl("net.ipv4.conf.all.arp_announce", "1")
	ns.MustRun("ip", "addr", "add", "10.9.9.9/32", "dev", "lo") // not ours: must survive -undo
	const vips = "198.18.77.10,198.18.77.11"
	sysctls := func() [2]string {
		return [2]string{sysctlIn(t, ns, "net.ipv4.conf.all.arp_ignore"), sysctlIn(t, ns, "net.ipv4.conf.all.arp_announce")}
	}

	out, errOut, code := directordIn(t, ns, "realserver", "-vip", vips, "-state", state)
	if code != exitOK || !strings.Contains(out, "198.18.77.10") || !strings.Contains(out, "198.18.77.11") || !strings.Contains(out, " on lo") {
		t.Fatalf("realserver: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	wantAddrs := []string{"127.0.0.1/8", "10.9.9.9/32", "198.18.77.10/32", "198.18.77.11/32"}
	if diff := cmp.Diff(wantAddrs, loAddrs(t, ns)); diff != "" {
		t.Errorf("lo after realserver (-want +got):\n%s", diff)
	}
	if got := sysctls(); got != [2]string{"1", "2"} {
		t.Errorf("arp_ignore, arp_announce after realserver = %v, want [1 2]", got)
	}
	recorded, err := os.ReadFile(state)
	if err != nil {
		t.Fatalf("realserver left no state for -undo: %v", err)
	}
	if want := `{"previous":{"net/ipv4/conf/all/arp_announce":"1","net/ipv4/conf/all/arp_ignore":"0"}}`; string(recorded) != want {
		t.Errorf("state file = %s, want %s", recorded, want)
	}

	// Idempotent: the same call again changes nothing, and the state keeps
	// the values from before the first call (not the ones it set).
	if out, errOut, code := directordIn(t, ns, "realserver", "-vip", vips, "-state", state); code != exitOK {
		t.Fatalf("second realserver: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	if diff := cmp.Diff(wantAddrs, loAddrs(t, ns)); diff != "" {
		t.Errorf("lo after a second realserver (-want +got):\n%s", diff)
	}
	if again, _ := os.ReadFile(state); !bytes.Equal(again, recorded) {
		t.Errorf("a second realserver rewrote the state: %s, was %s", again, recorded)
	}

	out, errOut, code = directordIn(t, ns, "realserver", "-undo", "-state", state)
	if code != exitOK || !strings.Contains(out, "restored the ARP sysctls") {
		t.Fatalf("realserver -undo: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	if diff := cmp.Diff([]string{"127.0.0.1/8", "10.9.9.9/32"}, loAddrs(t, ns)); diff != "" {
		t.Errorf("lo after -undo (-want +got):\n%s", diff)
	}
	if got := sysctls(); got != [2]string{"0", "1"} {
		t.Errorf("arp_ignore, arp_announce after -undo = %v, want the originals [0 1]", got)
	}
	if _, err := os.Stat(state); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("-undo left the state file: %v", err)
	}
	if out, errOut, code := directordIn(t, ns, "realserver", "-undo", "-state", state); code != exitOK {
		t.Errorf("second -undo: exit %d, stdout %q, stderr:\n%s", code, out, errOut)
	}
	if got := sysctls(); got != [2]string{"0", "1"} {
		t.Errorf("a second -undo changed the sysctls to %v", got)
	}

	for _, bad := range [][]string{{"realserver", "-vip", "198.18.77.300", "-state", state}, {"realserver", "-state", state}} {
		if _, errOut, code := directordIn(t, ns, bad...); code != exitUsage {
			t.Errorf("directord %v: exit %d, want %d; stderr:\n%s", bad, code, exitUsage, errOut)
		}
	}
	if t.Failed() {
		t.Logf("lo now: %v", loAddrs(t, ns))
	}
}
