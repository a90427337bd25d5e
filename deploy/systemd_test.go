package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// units are the systemd units the package installs.
var units = []string{"directord.service", "directord-realserver.service"}

// buildDirectord compiles directord into dir/usr/sbin, where the units expect it.
func buildDirectord(t *testing.T, root string) string {
	t.Helper()
	bin := filepath.Join(root, "usr/sbin/directord")
	out, err := exec.Command("go", "build", "-o", bin, "github.com/anycast-director/director/cmd/directord").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// copyTree copies a directory tree (regular files, folders and symlinks).
func copyTree(t *testing.T, src, dst string) {
	t.Helper()
	out, err := exec.Command("cp", "-a", src+"/.", dst).CombinedOutput()
	if err != nil {
		t.Fatalf("cp -a %s %s: %v\n%s", src, dst, err, out)
	}
}

// TestSystemdUnitsVerify: systemd-analyze verify accepts both units without a
// single warning, in a root holding the units, the system's own units they
// depend on, and the commands they run.
func TestSystemdUnitsVerify(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Skip("systemd-analyze not installed (scripts/deps.sh installs systemd)")
	}
	root := t.TempDir()
	unitDir := filepath.Join(root, "usr/lib/systemd/system")
	if err := os.MkdirAll(unitDir, 0o755); err != nil {
		t.Fatal(err)
	}
	copyTree(t, "/usr/lib/systemd/system", unitDir)
	buildDirectord(t, root)
	if err := os.MkdirAll(filepath.Join(root, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("cp", "/bin/kill", filepath.Join(root, "bin/kill")).CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	args := []string{"verify", "--man=no", "--root=" + root}
	for _, u := range units {
		data, err := os.ReadFile(filepath.Join("systemd", u))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(unitDir, u), data, 0o644); err != nil {
			t.Fatal(err)
		}
		args = append(args, filepath.Join(unitDir, u))
	}
	got, err := exec.Command("systemd-analyze", args...).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(got))) != 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, got)
	}
}

// TestUnitLeastPrivilege pins the unit's privileges to what the privileged
// test TestPrivilegedLeastPrivilege (cmd/directord) proves sufficient.
func TestUnitLeastPrivilege(t *testing.T) {
	data, err := os.ReadFile("systemd/directord.service")
	if err != nil {
		t.Fatal(err)
	}
	const caps = "CAP_NET_ADMIN CAP_NET_RAW CAP_NET_BIND_SERVICE"
	for _, want := range []string{"\nUser=directord\n", "\nAmbientCapabilities=" + caps + "\n",
		"\nCapabilityBoundingSet=" + caps + "\n", "\nNoNewPrivileges=yes\n", "\nType=notify\n",
		"\nStateDirectory=directord\n", "\nRuntimeDirectory=directord\n", "\nProtectSystem=strict\n"} {
		if !strings.Contains(string(data), want) {
			t.Errorf("directord.service lacks %q", strings.TrimSpace(want))
		}
	}
}
