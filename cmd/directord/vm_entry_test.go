//go:build linux && vm

package main

import (
	"bytes"
	"errors"
	"flag"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

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
// test binary. A child that outlives its test dies after 30 minutes, more
// than any VM run of make test-vm: with five, the console test (Chromium
// under emulation) outlived its own daemon.
func selfCommand(t testing.TB, args ...string) []string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatalf("find the test binary to re-execute as directord: %v", err)
	}
	return append([]string{exe, "-test.run=^TestVMEntryPoint$", "-test.timeout=30m", "--"}, args...)
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
