//go:build linux && privileged

package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
)

// leastPrivilegeConfig needs every capability the unit grants: a VIP bound on
// lo (CAP_NET_ADMIN), BGP on port 179 (CAP_NET_BIND_SERVICE).
// The service's health target is directord's own metrics listener, so the VIP
// becomes servable without any other process.
func leastPrivilegeConfig(dir string) string {
	return fmt.Sprintf(`director: { name: lp, announce: bgp, hold_down: 0s, graceful_shutdown: 0s, linger: 0s, state_dir: %[1]s/state }
api: { socket: %[1]s/d.sock }
metrics: { listen: 127.0.0.1:9479 }
bgp:
  asn: 65100
  router_id: 10.0.1.11
  peers:
    - { address: 10.0.1.1, asn: 65000, bfd: { min_interval: 100ms, multiplier: 3 } }
services:
  - name: self
    vip: 198.18.0.10
    port: 9479
    forwarding: local
    health: { type: tcp, interval: 200ms, rise: 1, fall: 1 }
    backends: [ { address: 127.0.0.1 } ]
`, dir)
}

// leastPrivilegeLab builds directord where nobody can run it and writes the
// configuration; it returns the namespace, the binary and the config path.
func leastPrivilegeLab(t *testing.T) (*netlab.NS, string, string) {
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Skip("setpriv (util-linux) not installed")
	}
	lab := netlab.New(t)
	ns := lab.Namespace("lp")
	dir := filepath.Join(lab.Dir(), "lp")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "directord")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	run := filepath.Join(dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "directord.yaml")
	if err := os.WriteFile(cfg, []byte(leastPrivilegeConfig(run)), 0o644); err != nil {
		t.Fatal(err)
	}
	return ns, bin, cfg
}

// TestPrivilegedLeastPrivilege: as an unprivileged user with only
// CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE, directord starts, binds
// its VIP, listens for BGP on 179 and advertises. Before the fix it failed at
// once: "open netlink handle: failed to set into network namespace ...:
// operation not permitted" (it entered its own namespace, needing
// CAP_SYS_ADMIN).
func TestPrivilegedLeastPrivilege(t *testing.T) {
	ns, bin, cfg := leastPrivilegeLab(t)
	t.Run("unit capabilities", func(t *testing.T) { runWithUnitCapabilities(t, ns, bin, cfg) })
	t.Run("missing capability named", func(t *testing.T) { missingCapabilityNamed(t, ns, bin, cfg) })
}

// runWithUnitCapabilities runs directord as nobody with the unit's capabilities.
func runWithUnitCapabilities(t *testing.T, ns *netlab.NS, bin, cfg string) {
	p := ns.Start("directord", nil, setprivArgs(unitCaps, bin, "run", "-config", cfg)...)
	if _, _, err := p.WaitOutput("VIP advertised", 0, 30*time.Second); err != nil {
		t.Fatalf("directord with the unit's capabilities: %v\n%s", err, p.Output())
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		t.Fatal(err)
	}
	// CAP_NET_BIND_SERVICE (10), CAP_NET_ADMIN (12), CAP_NET_RAW (13).
	for _, want := range []string{fmt.Sprintf("Uid:\t%d\t%d", nobody, nobody), "CapEff:\t0000000000003400", "CapBnd:\t0000000000003400"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("directord's /proc status lacks %q:\n%s", want, status)
		}
	}
	if addrs := ns.MustRun("ip", "-o", "addr", "show", "dev", "lo"); !strings.Contains(addrs, "198.18.0.10/32") {
		t.Errorf("VIP not bound on lo:\n%s", addrs)
	}
	if ls := ns.MustRun("ss", "-Hltn", "sport", "= :179"); !strings.Contains(ls, ":179") {
		t.Errorf("BGP is not listening on port 179: %q", ls)
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(20 * time.Second); err != nil {
		t.Errorf("SIGTERM: %v\n%s", err, p.Output())
	}
}

// missingCapabilityNamed: without CAP_NET_ADMIN, or without
// CAP_NET_BIND_SERVICE, directord refuses to start and names the missing
// capability and what needs it.
func missingCapabilityNamed(t *testing.T, ns *netlab.NS, bin, cfg string) {
	for _, tc := range []struct {
		caps []string
		want string
	}{
		{[]string{"net_raw", "net_bind_service"}, "missing capability CAP_NET_ADMIN (to bind VIPs on lo)"},
		{[]string{"net_admin", "net_raw"}, "missing capability CAP_NET_BIND_SERVICE (to listen for BGP on port 179)"},
	} {
		p := ns.Start("directord", nil, setprivArgs(tc.caps, bin, "run", "-config", cfg)...)
		err := p.Wait(20 * time.Second)
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != exitFail {
			t.Errorf("caps %v: exit %v, want status %d\n%s", tc.caps, err, exitFail, p.Output())
		}
		if !strings.Contains(p.Output(), tc.want) {
			t.Errorf("caps %v: output lacks %q:\n%s", tc.caps, tc.want, p.Output())
		}
	}
}
