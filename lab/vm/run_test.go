package vm

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPlanRunDefaultsAndEnvironment(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	p, err := planRun(Options{Env: []string{"FOO=bar", "TERM=xterm"}, Dir: "/", OutDir: out}, []string{"true"})
	if err != nil {
		t.Fatalf("planRun: %v", err)
	}
	if p.memory != defaultMemory || p.cpus != defaultCPUs || p.timeout != defaultTimeout {
		t.Errorf("defaults = %d MiB, %d CPUs, %s", p.memory, p.cpus, p.timeout)
	}
	if st, err := os.Stat(out); err != nil || !st.IsDir() {
		t.Errorf("output folder not created: %v", err)
	}
	if len(p.shares) != 1 || p.shares[0].Host != out || p.shares[0].Guest != out || p.shares[0].ReadOnly {
		t.Errorf("shares = %+v, want the output folder writable at the same path", p.shares)
	}
	for _, want := range []string{"'FOO=bar'", "'TERM=xterm'", "'HOME=/root'", "'PATH=" + debianRootPath + "'", "'VM_GUEST=1'", "'VM_OUTDIR=" + out + "'", "cd '/'"} {
		if !strings.Contains(p.script, want) {
			t.Errorf("command script lacks %s:\n%s", want, p.script)
		}
	}
}

func TestPlanRunInheritsCallerEnvironmentAndDir(t *testing.T) {
	t.Setenv("VM_PLAN_TEST", "inherited value")
	wd, _ := os.Getwd()
	p, err := planRun(Options{}, []string{"true"})
	if err != nil {
		t.Fatalf("planRun: %v", err)
	}
	for _, want := range []string{"'VM_PLAN_TEST=inherited value'", "cd " + shQuote(wd)} {
		if !strings.Contains(p.script, want) {
			t.Errorf("command script lacks %s:\n%s", want, p.script)
		}
	}
}

func TestPlanRunRejects(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	os.WriteFile(file, nil, 0o644)
	dir := t.TempDir()
	tests := []struct {
		name string
		o    Options
		argv []string
		want string
	}{
		{"no command", Options{Dir: "/"}, nil, "no command"},
		{"unknown program", Options{Dir: "/"}, []string{"no-such-program-vm-test"}, `"no-such-program-vm-test" not found`},
		{"program path missing", Options{Dir: "/"}, []string{"/nonexistent/prog"}, "not found"},
		{"not executable", Options{Dir: "/"}, []string{file}, "not found or not executable"},
		{"relative dir", Options{Dir: "rel"}, []string{"true"}, "not absolute"},
		{"missing dir", Options{Dir: "/nonexistent-vm-dir"}, []string{"true"}, "does not exist"},
		{"share not a folder", Options{Dir: "/", Shares: []Share{{Host: file}}}, []string{"true"}, "not an existing folder"},
		{"share over root", Options{Dir: "/", Shares: []Share{{Host: dir, Guest: "/"}}}, []string{"true"}, "root"},
		{"share with space", Options{Dir: "/", Shares: []Share{{Host: dir, Guest: "/a b"}}}, []string{"true"}, "white space"},
		{"relative share", Options{Dir: "/", Shares: []Share{{Host: "rel"}}}, []string{"true"}, "absolute"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := planRun(tc.o, tc.argv)
			if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("planRun error = %v, want ErrInvalid containing %q", err, tc.want)
			}
		})
	}
}

// TestPlanRunTrustsGuestOnlyPaths: programs and folders under a share's guest
// path or the guest's own /run cannot be checked on the host.
func TestPlanRunTrustsGuestOnlyPaths(t *testing.T) {
	dir := t.TempDir()
	shares := []Share{{Host: dir, Guest: "/guest/data"}}
	for _, tc := range []struct {
		dir  string
		argv []string
	}{
		{"/guest/data/sub", []string{"./tool"}},
		{"/", []string{"/guest/data/tool"}},
		{"/run/lab", []string{"true"}},
	} {
		if _, err := planRun(Options{Dir: tc.dir, Shares: shares}, tc.argv); err != nil {
			t.Errorf("planRun(dir %s, %v): %v", tc.dir, tc.argv, err)
		}
	}
}

func TestWithin(t *testing.T) {
	tests := []struct {
		p, root string
		want    bool
	}{
		{"/run", "/run", true},
		{"/run/netns", "/run", true},
		{"/running", "/run", false},
		{"/", "/run", false},
		{"/a/../run/x", "/run", true},
	}
	for _, tc := range tests {
		if got := within(tc.p, tc.root); got != tc.want {
			t.Errorf("within(%q, %q) = %v, want %v", tc.p, tc.root, got, tc.want)
		}
	}
}

func TestRunWithoutQEMUFailsClearly(t *testing.T) {
	_, err := Run(context.Background(), Options{Dir: "/", QEMU: "/nonexistent/qemu-system-x86_64"}, []string{"true"})
	if !errors.Is(err, ErrQEMUMissing) || !strings.Contains(err.Error(), "qemu-system-x86") {
		t.Fatalf("Run error = %v, want ErrQEMUMissing naming the package", err)
	}
}

func TestRunRejectsBeforeBooting(t *testing.T) {
	start := time.Now()
	_, err := Run(context.Background(), Options{Dir: "/"}, []string{"no-such-program-vm-test"})
	if !errors.Is(err, ErrInvalid) {
		t.Fatalf("Run error = %v, want ErrInvalid", err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("rejecting took %s: it must not boot a VM", d)
	}
}

func TestWriteControl(t *testing.T) {
	ctl := filepath.Join(t.TempDir(), "ctl")
	p := runPlan{script: "#!/bin/sh\n", shares: []Share{{Host: "/h", Guest: "/g"}}}
	n1, err := writeControl(ctl, p)
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"cmd.sh": "#!/bin/sh\n", "nonce": n1 + "\n", "mounts": "share0 /g rw\n"} {
		got, err := os.ReadFile(filepath.Join(ctl, name))
		if err != nil || string(got) != want {
			t.Errorf("%s = %q, %v; want %q", name, got, err, want)
		}
	}
	n2, _ := writeControl(filepath.Join(t.TempDir(), "ctl"), p)
	if len(n1) != 16 || n1 == n2 {
		t.Errorf("nonces %q and %q: want 16 hex digits, different per run", n1, n2)
	}
}
