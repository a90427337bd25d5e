//go:build linux && vm

package compare

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// directordBinary is the directord to compare: $DIRECTORD_BIN, or the one
// `make build` left in bin/ (make test-vm builds it first).
func directordBinary(t *testing.T) string {
	if p := os.Getenv("DIRECTORD_BIN"); p != "" {
		return p
	}
	p, err := filepath.Abs("../../bin/directord")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(p); err != nil {
		t.Skipf("no directord binary at %s: run make build, or set DIRECTORD_BIN", p)
	}
	return p
}

// TestVMCompareSmoke runs the whole comparison once at N=10 with distinct
// targets, so the harness of `make bench-compare` cannot rot: both daemons
// must get through every phase, the listeners must count probes, the
// kprobes must count writes, and directord must not write IPVS in steady
// state nor touch other destinations when one real server fails and
// recovers.
func TestVMCompareSmoke(t *testing.T) {
	if os.Getenv("VM_GUEST") != "1" {
		t.Skip("runs inside the VM: make test-vm")
	}
	keepalived, err := exec.LookPath("keepalived")
	if err != nil {
		t.Fatal("keepalived is not installed: bash scripts/deps.sh")
	}
	s := Scenario{Services: 10, RealServers: 10, Interval: 2 * time.Second, Timeout: time.Second, Fall: 3}
	var log strings.Builder
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	res, err := Measure(ctx, Options{Scenarios: []Scenario{s}, Reps: 1, Dir: t.TempDir(), Prefix: "bcsmoke",
		Binaries: Binaries{Directord: directordBinary(t), Keepalived: keepalived}, Log: &log,
		Timing: Timing{Steady: 4 * time.Second, Settle: time.Second, Limit: time.Minute}})
	t.Log(log.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := Failed(res); err != nil {
		t.Fatal(err)
	}
	if len(res.Runs) != 2 {
		t.Fatalf("%d runs, want 2", len(res.Runs))
	}
	for _, r := range res.Runs {
		if r.Probes == 0 || r.CPUSeconds <= 0 || r.RSS <= 0 {
			t.Errorf("%s: %d probes, %.2fs CPU, %d bytes RSS: the counters measured nothing", r.Daemon, r.Probes, r.CPUSeconds, r.RSS)
		}
		if r.StartWrites.AddDest != int64(s.Services*s.RealServers) {
			t.Errorf("%s: %d destinations added at start-up, want one per destination (%d): %s",
				r.Daemon, r.StartWrites.AddDest, s.Services*s.RealServers, r.StartWrites)
		}
		if r.Daemon != Directord {
			continue
		}
		if r.SteadyWrites.Commands != 0 {
			t.Errorf("directord wrote IPVS in steady state: %s", r.SteadyWrites)
		}
		if r.DetectOther != 0 || r.RecoverOther != 0 || r.ReloadOther != 0 {
			t.Errorf("directord changed more than it had to: detection %s, recovery %s, reload %s",
				r.DetectWrites, r.RecoverWrites, r.ReloadWrites)
		}
	}
	var md strings.Builder
	WriteReport(&md, res, "TestVMCompareSmoke")
	if !strings.Contains(md.String(), "| daemon CPU per completed probe |") {
		t.Errorf("report lacks the CPU row:\n%s", md.String())
	}
}
