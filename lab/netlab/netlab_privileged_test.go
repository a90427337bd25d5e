//go:build linux && privileged

package netlab

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestPrivilegedNetlab exercises every part of the harness once: namespaces,
// a dual-stack veth link, sysctls, the FIB readers and monitor, FRR with
// vtysh JSON, and process control by PID; cleanup is checked afterwards.
func TestPrivilegedNetlab(t *testing.T) {
	var prefix string
	var pids []int
	t.Run("lab", func(t *testing.T) {
		lab := New(t)
		prefix = lab.Prefix()
		a, b := lab.Namespace("a"), lab.Namespace("b")
		a.Router()
		if got := strings.TrimSpace(a.MustRun("sysctl", "-n", "net.ipv4.fib_multipath_hash_policy")); got != "1" {
			t.Errorf("fib_multipath_hash_policy in %s = %q, want 1", a.Name, got)
		}
		aIf, bIf := lab.Link(a, []string{"10.9.0.1/24", "fd00:9::1/64"}, b, []string{"10.9.0.2/24", "fd00:9::2/64"})
		if aIf != "eth0" || bIf != "eth0" {
			t.Errorf("link names = %s, %s; want eth0, eth0", aIf, bIf)
		}
		for _, dst := range []string{"10.9.0.1", "fd00:9::1"} {
			if _, err := b.Run("busybox", "ping", "-c1", "-W2", dst); err != nil {
				t.Errorf("ping %s from %s: %v", dst, b.Name, err)
			}
		}

		// FIB: an ECMP route, seen by the monitor and by the readers.
		mon := a.MonitorRoutes()
		time.Sleep(100 * time.Millisecond) // let ip monitor subscribe
		a.MustRun("ip", "neigh", "add", "10.9.0.3", "lladdr", "02:00:00:00:00:03", "dev", "eth0")
		a.MustRun("ip", "route", "add", "198.18.9.9/32", "nexthop", "via", "10.9.0.2", "nexthop", "via", "10.9.0.3")
		if _, _, err := mon.Wait(2*time.Second, "198.18.9.9"); err != nil {
			t.Errorf("route monitor: %v", err)
		}
		gws, err := a.Gateways("198.18.9.9")
		if err != nil {
			t.Fatal(err)
		}
		if d := cmp.Diff([]string{"10.9.0.2", "10.9.0.3"}, gws); d != "" {
			t.Errorf("Gateways (-want +got):\n%s", d)
		}
		a.MustRun("ip", "-6", "route", "add", "2001:db8:9::9/128", "via", "fd00:9::2")
		if gws, err := a.Gateways("2001:db8:9::9/128"); err != nil || len(gws) != 1 || gws[0] != "fd00:9::2" {
			t.Errorf("IPv6 Gateways = %v, %v; want [fd00:9::2]", gws, err)
		}
		if gws, err := a.Gateways("198.18.9.10"); err != nil || len(gws) != 0 {
			t.Errorf("Gateways of a missing route = %v, %v; want none", gws, err)
		}
		a.MustRun("ip", "route", "del", "198.18.9.9/32")
		if _, _, err := mon.Wait(2*time.Second, "Deleted", "198.18.9.9"); err != nil {
			t.Errorf("route monitor, delete: %v", err)
		}

		// FRR: zebra + bgpd, configured through vtysh, read back as JSON.
		frr := a.StartFRR("router bgp 65000\n bgp router-id 10.9.0.1\n neighbor 10.9.0.2 remote-as 65001\n neighbor 10.9.0.2 timers connect 1\nexit\nrouter ospf\n ospf router-id 10.9.0.1\n network 10.9.0.0/24 area 0\nexit\n", "bgpd", "bfdd", "ospfd")
		nb, err := frr.BGPNeighbors()
		if err != nil {
			t.Fatal(err)
		}
		if n, ok := nb["10.9.0.2"]; !ok || n.RemoteAS != 65001 || n.State == "Established" {
			t.Errorf("BGPNeighbors = %+v, want 10.9.0.2 (AS 65001) not established", nb)
		}
		var ospf struct {
			RouterID string `json:"routerId"`
		}
		if err := frr.VtyshJSON("show ip ospf json", &ospf); err != nil || ospf.RouterID != "10.9.0.1" {
			t.Errorf("ospfd: router id %q, %v; want 10.9.0.1", ospf.RouterID, err)
		}
		if paths, err := frr.BGPRoute("198.18.9.9/32"); err != nil || len(paths) != 0 {
			t.Errorf("BGPRoute of an unknown prefix = %v, %v; want no paths", paths, err)
		}
		if cpu, err := CPUTime(frr.PID("bgpd")); err != nil || cpu < 0 {
			t.Errorf("CPUTime(bgpd) = %v, %v", cpu, err)
		}

		// Processes: stop, resume, kill by PID.
		p := b.Start("sleeper", []string{"NETLAB_TEST=1"}, "sh", "-c", "echo ready $NETLAB_TEST; exec sleep 60")
		if _, _, err := p.WaitOutput("ready 1", 0, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := p.Signal(syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		MustWait(t, 2*time.Second, "sleeper stopped", func() error { return procState(p.PID, "T") })
		if err := p.Signal(syscall.SIGCONT); err != nil {
			t.Fatal(err)
		}
		MustWait(t, 2*time.Second, "sleeper running", func() error { return procState(p.PID, "S") })
		p.Kill()
		if !p.Exited() {
			t.Errorf("sleeper still running after Kill")
		}
		pids = []int{frr.PID("zebra"), frr.PID("bgpd"), frr.PID("bfdd"), frr.PID("ospfd")}
	})

	// Cleanup removed the namespaces and killed the daemons.
	out, err := runCmd("ip", "netns", "list")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(out, prefix) {
		t.Errorf("namespaces with prefix %s left after cleanup:\n%s", prefix, out)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("FRR pid %d still exists after cleanup (kill 0: %v)", pid, err)
		}
	}
}

// procState checks the state letter of a process in /proc/PID/stat.
func procState(pid int, want string) error {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if fields[0] != want {
		return fmt.Errorf("pid %d state %s, want %s", pid, fields[0], want)
	}
	return nil
}
