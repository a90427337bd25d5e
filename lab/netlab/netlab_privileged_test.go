//go:build linux && privileged

package netlab

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

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/lab/nslab"
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

		// BIRD: checked, started, answering on its control socket.
		bird := b.StartBIRD("router id 10.9.0.2;\nprotocol device {}\n")
		if out, err := bird.Birdc("show", "status"); err != nil || !strings.Contains(out, "Router ID is 10.9.0.2") {
			t.Errorf("birdc show status = %q, %v; want router id 10.9.0.2", out, err)
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
		pids = []int{frr.PID("zebra"), frr.PID("bgpd"), frr.PID("bfdd"), frr.PID("ospfd"), bird.Proc.PID}
	})

	// Cleanup removed the namespaces and killed the daemons.
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), prefix) {
		t.Errorf("namespaces with prefix %s left after cleanup:\n%s", prefix, out)
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("daemon pid %d still exists after cleanup (kill 0: %v)", pid, err)
		}
	}
}

// procState checks the state letter of a process in /proc/PID/stat.
func procState(pid int, want string) error {
	got, err := nslab.ProcState(pid)
	if err != nil {
		return err
	}
	if got != want {
		return fmt.Errorf("pid %d state %s, want %s", pid, got, want)
	}
	return nil
}

// TestPrivilegedDeploy runs a test topology: nodes are namespaces of the
// topology's names with their own hostname, addressed and linked as the
// file says; cleanup removes them.
func TestPrivilegedDeploy(t *testing.T) {
	var prefix string
	t.Run("lab", func(t *testing.T) {
		topo := Deploy(t, "router-directors")
		prefix = topo.Prefix()
		rtr, d2 := topo.Node("rtr"), topo.Node("d2")
		if d2.Name != prefix+"d2" || d2.Short != "d2" {
			t.Errorf("node d2: namespace %q, short %q", d2.Name, d2.Short)
		}
		if got := strings.TrimSpace(d2.MustRun("hostname")); got != "d2" {
			t.Errorf("hostname in d2 = %q", got)
		}
		if got := strings.TrimSpace(rtr.MustRun("sysctl", "-n", "net.ipv4.fib_multipath_hash_policy")); got != "1" {
			t.Errorf("rtr fib_multipath_hash_policy = %q, want the topology's 1", got)
		}
		if ifs := [2]string{topo.LinkIf("rtr", "d2"), topo.LinkIf("d2", "rtr")}; ifs != [2]string{"eth2", "eth1"} {
			t.Errorf("LinkIf rtr-d2 = %v, want [eth2 eth1]", ifs)
		}
		for _, dst := range []string{"10.0.2.1", "fd00:2::1"} {
			if _, err := d2.Run("busybox", "ping", "-c1", "-W2", dst); err != nil {
				t.Errorf("ping %s from d2: %v", dst, err)
			}
		}
		if _, err := d2.Run("busybox", "ping", "-c1", "-W1", "10.0.1.1"); err == nil {
			t.Errorf("d2 reached d1's link: the links are not separate")
		}
		if gws, err := rtr.Gateways("10.0.3.0/24"); err != nil || len(gws) != 0 {
			t.Errorf("Gateways of a connected route = %v, %v; want none", gws, err)
		}
	})
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(out), prefix) {
		t.Errorf("namespaces with prefix %s left after cleanup:\n%s", prefix, out)
	}
}

// TestPrivilegedRouteChanges counts a prefix's route changes while an action
// runs: every change the action makes is counted, up to its last one, and
// nothing else: not a change made just before, not another prefix's.
func TestPrivilegedRouteChanges(t *testing.T) {
	lab := New(t)
	a, b := lab.Namespace("a"), lab.Namespace("b")
	lab.Link(a, []string{"10.9.0.1/24"}, b, []string{"10.9.0.2/24"})
	a.MustRun("ip", "neigh", "add", "10.9.0.3", "lladdr", "02:00:00:00:00:03", "dev", "eth0")
	a.MustRun("ip", "route", "add", "198.18.9.9/32", "via", "10.9.0.2") // before: not counted

	// The last step is a burst of 100 changes, made as fast as the kernel
	// takes them: all must be counted, up to the very last one.
	var burst strings.Builder
	for range 50 {
		burst.WriteString("route del 198.18.9.9/32\nroute add 198.18.9.9/32 via 10.9.0.3\n")
	}
	batch := filepath.Join(lab.Dir(), "burst")
	if err := os.WriteFile(batch, []byte(burst.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	evs := a.RouteChanges("198.18.9.9/32", func() error {
		a.MustRun("ip", "route", "add", "198.18.9.10/32", "via", "10.9.0.2") // another prefix
		a.MustRun("ip", "route", "replace", "198.18.9.9/32", "nexthop", "via", "10.9.0.2", "nexthop", "via", "10.9.0.3")
		a.MustRun("ip", "route", "del", "198.18.9.9/32")
		a.MustRun("ip", "route", "add", "198.18.9.9/32", "via", "10.9.0.3")
		_, err := a.Run("ip", "-batch", batch)
		return err
	})
	if len(evs) != 103 {
		t.Errorf("%d route changes of 198.18.9.9 counted, want 3 + 100", len(evs))
	}
	var got []string
	for _, e := range evs[:min(3, len(evs))] {
		verb := "add"
		if e.Deleted {
			verb = "del"
		}
		got = append(got, fmt.Sprintf("%s %s %v", verb, e.Dst, e.Gateways()))
	}
	want := []string{"add 198.18.9.9 [10.9.0.2 10.9.0.3]", "del 198.18.9.9 [10.9.0.2 10.9.0.3]", "add 198.18.9.9 [10.9.0.3]"}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("route changes of 198.18.9.9 (-want +got):\n%s", d)
	}
	if none := a.RouteChanges("198.18.9.9", func() error { return nil }); len(none) != 0 {
		t.Errorf("route changes while nothing changed: %+v", none)
	}
}
