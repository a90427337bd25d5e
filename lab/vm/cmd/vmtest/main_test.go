package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/vm"
	"github.com/google/go-cmp/cmp"
)

// TestDriverScriptRunsBinariesInTheirFolders executes the generated driver on
// the host with shell scripts standing in for test binaries.
func TestDriverScriptRunsBinariesInTheirFolders(t *testing.T) {
	work := t.TempDir()
	var pkgs []testPkg
	for i, rc := range []int{0, 3} {
		dir := filepath.Join(t.TempDir(), fmt.Sprintf("pkg %d", i))
		os.Mkdir(dir, 0o755)
		bin := filepath.Join(work, fmt.Sprintf("%03d-p.test", i))
		script := fmt.Sprintf("#!/bin/sh\necho \"pwd=$PWD args=$*\"\nexit %d\n", rc)
		if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
		pkgs = append(pkgs, testPkg{ImportPath: fmt.Sprintf("ex/p%d", i), Dir: dir, Binary: bin})
	}
	driver := driverScript(pkgs, []string{"-test.v=true", "-test.run=^Test it's$"}, work)
	out, err := exec.Command("/bin/sh", "-c", driver).CombinedOutput()
	if err != nil {
		t.Fatalf("driver: %v\n%s", err, out)
	}
	p := newStreamParser([]string{"ex/p0", "ex/p1"}, nil)
	p.Write(out)
	p.Flush()
	for i, want := range []string{
		"pwd=" + pkgs[0].Dir + " args=-test.v=true -test.run=^Test it's$\n",
		"pwd=" + pkgs[1].Dir + " args=-test.v=true -test.run=^Test it's$\n",
	} {
		if diff := cmp.Diff(want, p.pkgs[i].Output.String()); diff != "" {
			t.Errorf("package %d output (-want +got):\n%s", i, diff)
		}
	}
	if got0, got1 := readStatus(filepath.Join(work, "000.rc")), readStatus(filepath.Join(work, "001.rc")); got0 != 0 || got1 != 3 {
		t.Errorf("statuses = %d, %d; want 0, 3", got0, got1)
	}
	if got := readStatus(filepath.Join(work, "002.rc")); got != -1 {
		t.Errorf("status of a binary that never ran = %d, want -1", got)
	}
}

func TestTestFlags(t *testing.T) {
	c := config{run: "TestX", bench: ".", benchtime: "1x", count: 2, benchmem: true, timeout: 15 * time.Minute}
	want := []string{"-test.v=true", "-test.paniconexit0", "-test.timeout=14m0s", "-test.run=TestX",
		"-test.bench=.", "-test.benchtime=1x", "-test.count=2", "-test.benchmem=true"}
	if diff := cmp.Diff(want, c.testFlags()); diff != "" {
		t.Errorf("testFlags (-want +got):\n%s", diff)
	}
}

func TestBinaryTimeout(t *testing.T) {
	for total, want := range map[time.Duration]time.Duration{
		15 * time.Minute: 14 * time.Minute,
		time.Minute:      50 * time.Second,
		10 * time.Second: 0,
	} {
		if got := binaryTimeout(total); got != want {
			t.Errorf("binaryTimeout(%s) = %s, want %s", total, got, want)
		}
	}
}

func TestParseList(t *testing.T) {
	got, err := parseList("ex/a\t/src/a\t2\t0\nex/b\t/src/b\t0\t0\nex/c\t/src/c\t0\t1\n")
	if err != nil {
		t.Fatal(err)
	}
	want := []testPkg{
		{ImportPath: "ex/a", Dir: "/src/a", HasTests: true},
		{ImportPath: "ex/b", Dir: "/src/b"},
		{ImportPath: "ex/c", Dir: "/src/c", HasTests: true},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("parseList (-want +got):\n%s", diff)
	}
	if _, err := parseList("garbage line\n"); err == nil {
		t.Errorf("parseList accepted a malformed line")
	}
}

// TestReportExitCodes: failures, empty runs and VM failures each fail.
func TestReportExitCodes(t *testing.T) {
	tests := []struct {
		name       string
		run        string // parser input
		statuses   []int  // -1: no status file
		runErr     error
		allowEmpty bool
		want       int
		wantOut    string
	}{
		{"pass", "=== VMTEST BEGIN 0\n--- PASS: TestA (0.00s)\n=== VMTEST END 0\n", []int{0}, nil, false, 0, "1 passed, 0 failed, 0 skipped"},
		{"test failed", "=== VMTEST BEGIN 0\n--- FAIL: TestA (0.00s)\n=== VMTEST END 0\n", []int{1}, nil, false, exitFail, "FAIL\tex/a"},
		{"nothing ran", "=== VMTEST BEGIN 0\ntesting: warning: no tests to run\n=== VMTEST END 0\n", []int{0}, nil, false, exitFail, "[no tests to run]"},
		{"nothing ran, allowed", "=== VMTEST BEGIN 0\n=== VMTEST END 0\n", []int{0}, nil, true, 0, "0 passed"},
		{"all skipped", "=== VMTEST BEGIN 0\n--- SKIP: TestA (0.00s)\n=== VMTEST END 0\n", []int{0}, nil, false, exitFail, "0 passed, 0 failed, 1 skipped"},
		{"binary never finished", "=== VMTEST BEGIN 0\n--- PASS: TestA (0.00s)\n", []int{-1}, nil, false, exitFail, "did not finish"},
		{"VM failed", "", []int{-1}, fmt.Errorf("%w: boom", vm.ErrTimeout), false, exitVM, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			work := t.TempDir()
			for i, st := range tc.statuses {
				if st >= 0 {
					os.WriteFile(filepath.Join(work, fmt.Sprintf("%03d.rc", i)), []byte(fmt.Sprintf("%d\n", st)), 0o644)
				}
			}
			p := newStreamParser([]string{"ex/a"}, nil)
			p.Write([]byte(tc.run))
			var stdout, stderr bytes.Buffer
			res := vm.Result{Console: []byte("[    1.0] first lockup trace\n[  900.0] last line")}
			got := report(&stdout, &stderr, config{allowEmpty: tc.allowEmpty}, p, work, res, tc.runErr, 0, 0)
			if got != tc.want {
				t.Errorf("exit = %d, want %d\nstdout:\n%s\nstderr:\n%s", got, tc.want, stdout.String(), stderr.String())
			}
			if !strings.Contains(stdout.String(), tc.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tc.wantOut, stdout.String())
			}
			if tc.runErr != nil && !strings.Contains(stderr.String(), "the VM failed") {
				t.Errorf("stderr does not say the VM failed:\n%s", stderr.String())
			}
			// A failed VM's whole console is printed, its first line
			// included; a VM that ran prints none of it.
			printed := strings.Contains(stderr.String(), "first lockup trace\n[  900.0] last line\n"+consoleEnd)
			if printed != (tc.runErr != nil) {
				t.Errorf("console printed = %v with error %v:\n%s", printed, tc.runErr, stderr.String())
			}
		})
	}
}

func TestParseFlagsNeedsPackages(t *testing.T) {
	var stderr bytes.Buffer
	if _, err := parseFlags([]string{"-v"}, &stderr); err == nil {
		t.Errorf("no packages accepted")
	}
	c, err := parseFlags([]string{"-tags", "vm,extra", "-run", "X", "./a", "./b"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if c.tags != "vm,extra" || c.run != "X" || len(c.pkgs) != 2 {
		t.Errorf("parsed %+v", c)
	}
}
