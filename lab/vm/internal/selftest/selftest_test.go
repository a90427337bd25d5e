//go:build linux && vm

package selftest

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGuestIsRootWithIPVS checks what every IPVS test relies on: root, the
// runner's marker, and a kernel that has IPVS with the mh scheduler loaded.
func TestGuestIsRootWithIPVS(t *testing.T) {
	if os.Getuid() != 0 {
		t.Fatalf("uid = %d, want 0 (the VM runs tests as root)", os.Getuid())
	}
	if got := os.Getenv("VM_GUEST"); got != "1" {
		t.Fatalf("VM_GUEST = %q, want 1: not running inside lab/vm", got)
	}
	data, err := os.ReadFile("/proc/net/ip_vs")
	if err != nil {
		t.Fatalf("read /proc/net/ip_vs: %v (ip_vs not loaded?)", err)
	}
	if !strings.Contains(string(data), "IP Virtual Server") {
		t.Fatalf("/proc/net/ip_vs = %q, want the IPVS banner", data)
	}
	mods, err := os.ReadFile("/proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"ip_vs_mh", "ip_vs_wlc", "veth", "dummy"} {
		if !strings.Contains(string(mods), m+" ") {
			t.Errorf("module %s not loaded; /proc/modules:\n%s", m, mods)
		}
	}
}

// TestWorkingDirIsPackageDir proves testdata works: the runner starts each
// binary in its package folder.
func TestWorkingDirIsPackageDir(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "fixture.txt"))
	if err != nil {
		t.Fatalf("read testdata: %v", err)
	}
	if got, want := strings.TrimSpace(string(data)), "vm selftest fixture"; got != want {
		t.Fatalf("fixture = %q, want %q", got, want)
	}
}

// TestNamespaceAndIPVSAdm uses the host's iproute2 and ipvsadm in a fresh
// network namespace, as the IPVS and lab tests will.
func TestNamespaceAndIPVSAdm(t *testing.T) {
	b := make([]byte, 4)
	rand.Read(b)
	ns := "vmself-" + hex.EncodeToString(b)
	run := func(args ...string) string {
		t.Helper()
		out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("ip", "netns", "add", ns)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	run("ip", "-n", ns, "link", "add", "d0", "type", "dummy")
	run("ip", "-n", ns, "link", "set", "lo", "up")
	run("ip", "netns", "exec", ns, "ipvsadm", "-A", "-t", "10.0.0.1:80", "-s", "mh", "-b", "mh-port")
	run("ip", "netns", "exec", ns, "ipvsadm", "-a", "-t", "10.0.0.1:80", "-r", "10.0.1.1:80", "-g", "-w", "3")
	got := run("ip", "netns", "exec", ns, "ipvsadm", "-Ln")
	for _, want := range []string{"TCP  10.0.0.1:80 mh (mh-port)", "-> 10.0.1.1:80", "Route   3"} {
		if !strings.Contains(got, want) {
			t.Errorf("ipvsadm -Ln in %s lacks %q:\n%s", ns, want, got)
		}
	}
	// The service lives in the namespace only.
	if root := run("ipvsadm", "-Ln"); strings.Contains(root, "10.0.0.1:80") {
		t.Errorf("service leaked into the initial namespace:\n%s", root)
	}
}

// BenchmarkReadProcIPVS gives vmtest's -bench path a real benchmark to run:
// the cost of reading the IPVS table banner from the guest kernel.
func BenchmarkReadProcIPVS(b *testing.B) {
	var n int
	for b.Loop() {
		data, err := os.ReadFile("/proc/net/ip_vs")
		if err != nil {
			b.Fatal(err)
		}
		n += len(data)
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/read")
	b.ReportMetric(float64(n)/float64(b.N), "bytes/read")
}
