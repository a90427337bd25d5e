//go:build linux && privileged

package health

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
	"github.com/anycast-director/director/lab/netlab"
)

// The forwarding check against real namespaces on one bridge (no IPVS is
// needed: the check bypasses it):
//
//	director 10.98.0.1   good 10.98.0.11   novip 10.98.0.12   deaf 10.98.0.13
//	VIP on lo            VIP on lo, :80    no VIP, :80         VIP on lo, nothing on :80
const (
	fwdRoleEnv    = "HEALTH_FORWARD_ROLE"
	fwdVIP        = "198.18.98.10"
	fwdDirector   = "10.98.0.1"
	fwdGood       = "10.98.0.11"
	fwdNoVIP      = "10.98.0.12"
	fwdDeaf       = "10.98.0.13"
	fwdServedPort = 80
)

// TestPrivilegedForwardingCheck: the real server with the VIP passes, the
// one that answers on its own address but lacks the VIP fails with a hint
// to bind it, the one with the VIP but no listener fails as refused, and the
// passing probe leaves no half-open connection behind.
func TestPrivilegedForwardingCheck(t *testing.T) {
	switch os.Getenv(fwdRoleEnv) {
	case "probe":
		probeForwarding(t)
		return
	case "listen":
		listenAny(t)
		return
	}
	lab := netlab.New(t)
	sw := lab.Namespace("sw")
	sw.MustRun("ip", "link", "add", "br0", "type", "bridge")
	sw.MustRun("ip", "link", "set", "br0", "up")
	node := func(name, addr string, vip bool) *netlab.NS {
		ns := lab.Namespace(name)
		swIf, _ := lab.Link(sw, nil, ns, []string{addr + "/24"})
		sw.MustRun("ip", "link", "set", swIf, "master", "br0")
		if vip {
			ns.MustRun("ip", "addr", "add", fwdVIP+"/32", "dev", "lo")
			ns.Sysctl("net.ipv4.conf.all.arp_ignore", "1")
			ns.Sysctl("net.ipv4.conf.all.arp_announce", "2")
		}
		return ns
	}
	director := node("director", fwdDirector, true)
	good, novip := node("good", fwdGood, true), node("novip", fwdNoVIP, false)
	node("deaf", fwdDeaf, true)
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{self, "-test.run=^TestPrivilegedForwardingCheck$", "-test.v", "-test.count=1"}
	for _, ns := range []*netlab.NS{good, novip} {
		l := ns.Start("listener", []string{fwdRoleEnv + "=listen"}, args...)
		if _, _, err := l.WaitOutput("listening", 0, 10*time.Second); err != nil {
			t.Fatalf("listener in %s: %v\n%s", ns.Name, err, l.Output())
		}
	}
	prober := director.Start("prober", []string{fwdRoleEnv + "=probe"}, args...)
	if err := prober.Wait(60 * time.Second); err != nil {
		t.Fatalf("prober: %v\n%s", err, prober.Output())
	}
	if !strings.Contains(prober.Output(), "--- PASS") {
		t.Fatalf("the prober ran no test:\n%s", prober.Output())
	}
	t.Logf("prober:\n%s", prober.Output())
	if out := good.MustRun("ss", "-Htn", "state", "syn-recv"); strings.TrimSpace(out) != "" {
		t.Errorf("half-open connections left on the real server:\n%s", out)
	}
}

// listenAny accepts on every address of port 80 until killed.
func listenAny(t *testing.T) { listenAndClose(t, "tcp4", fmt.Sprintf("0.0.0.0:%d", fwdServedPort)) }

// probeForwarding runs the forwarding check from the director's namespace.
func probeForwarding(t *testing.T) {
	spec := check.Spec{Type: check.TCP, Timeout: time.Second, ForwardingCheck: true}
	path := Path{VIP: netip.MustParseAddr(fwdVIP), Port: fwdServedPort}
	run := func(addr string) error {
		tg := Target{Addr: netip.MustParseAddr(addr), Port: fwdServedPort, Spec: spec, Path: path}
		ctx, cancel := context.WithTimeout(t.Context(), spec.Timeout)
		defer cancel()
		start := time.Now()
		err := forwardingProbe(ctx, tg)
		t.Logf("%s: %v after %s", addr, err, time.Since(start).Round(time.Millisecond))
		return err
	}
	if err := run(fwdGood); err != nil {
		t.Errorf("real server with the VIP: %v, want a pass", err)
	}
	if err := run(fwdNoVIP); err == nil || !strings.Contains(err.Error(), "directord realserver add "+fwdVIP) ||
		!strings.Contains(err.Error(), "timeout after 1s") {
		t.Errorf("real server without the VIP: %v, want a timeout that says to bind the VIP", err)
	}
	if err := run(fwdDeaf); err == nil || !strings.Contains(err.Error(), "refused") {
		t.Errorf("real server with the VIP and nothing on the port: %v, want refused", err)
	}
	// Every probe takes a fresh port and sequence number.
	for range 3 {
		if err := run(fwdGood); err != nil {
			t.Errorf("repeated probe: %v", err)
		}
	}
}
