//go:build linux && privileged

package routerconfig

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedFRRPolicy runs the router configuration generated for the
// three-asn directors in real FRR and checks what it does, not only that FRR
// takes it: three directors in different ASs (played by FRR bgpd speaking as
// the director would) establish, the router installs one ECMP route over them
// (multipath-relax), a path tagged GRACEFUL_SHUTDOWN gets local preference 0
// and leaves the ECMP set, a prefix that is not a configured VIP never gets in,
// and the router sends the directors nothing.
func TestPrivilegedFRRPolicy(t *testing.T) {
	out, err := Generate("frr", loadDir(t, "three-asn"), Options{})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	lab := netlab.New(t)
	rtr := lab.Namespace("rtr")
	rtr.Router()
	// One LAN: a bridge on the router with every director's link in it.
	rtr.MustRun("ip", "link", "add", "br0", "type", "bridge")
	rtr.MustRun("ip", "link", "set", "br0", "up")
	rtr.AddAddr("br0", "10.0.1.1/24")
	type director struct {
		name, addr string
		asn        int
		frr        *netlab.FRR
	}
	dirs := []*director{
		{name: "d1", addr: "10.0.1.11", asn: 65101},
		{name: "d2", addr: "10.0.1.12", asn: 65102},
		{name: "d3", addr: "10.0.1.13", asn: 65103}, // its config has no local_address: router_id
	}
	for _, d := range dirs {
		ns := lab.Namespace(d.name)
		rif, _ := lab.Link(rtr, nil, ns, []string{d.addr + "/24"})
		rtr.MustRun("ip", "link", "set", rif, "master", "br0")
		d.frr = ns.StartFRR(directorBGP(d.asn, d.addr, d.name == "d3"), "bgpd")
	}
	router := rtr.StartFRR(string(out), "bgpd", "bfdd")

	netlab.MustWait(t, 15*time.Second, "three established sessions", func() error {
		ns, err := router.BGPNeighbors()
		if err != nil {
			return err
		}
		for _, d := range dirs {
			if ns[d.addr].State != "Established" {
				return fmt.Errorf("%s is %q", d.addr, ns[d.addr].State)
			}
		}
		return nil
	})

	// d3 tags the VIP with GRACEFUL_SHUTDOWN: local preference 0, so only d1
	// and d2 (different ASs: multipath-relax) carry the traffic.
	netlab.MustWait(t, 10*time.Second, "ECMP over d1 and d2, d3 de-preferred", func() error {
		paths, err := router.BGPRoute("198.18.0.10/32")
		if err != nil {
			return err
		}
		if len(paths) != 3 {
			return fmt.Errorf("%d paths, want 3", len(paths))
		}
		for _, p := range paths {
			gshut := p.Peer.PeerID == "10.0.1.13"
			if gshut != strings.Contains(p.Communities(), "graceful-shutdown") {
				return fmt.Errorf("path from %s has communities %q", p.Peer.PeerID, p.Communities())
			}
			if gshut && (p.LocalPref == nil || *p.LocalPref != 0) {
				return fmt.Errorf("the GRACEFUL_SHUTDOWN path has local preference %v, want 0", p.LocalPref)
			}
		}
		return gatewaysAre(rtr, "198.18.0.10", "10.0.1.11", "10.0.1.12")
	})

	// Each director's own configured VIP gets in; a prefix that is no VIP of
	// any director never does.
	for _, vip := range []struct{ prefix, via string }{{"198.18.0.53/32", "10.0.1.11"}, {"198.18.0.54/32", "10.0.1.12"}, {"198.18.0.55/32", "10.0.1.13"}} {
		netlab.MustWait(t, 5*time.Second, vip.prefix+" via "+vip.via, func() error {
			return gatewaysAre(rtr, strings.TrimSuffix(vip.prefix, "/32"), vip.via)
		})
	}
	if err := netlab.Hold(time.Second, 100*time.Millisecond, func() error {
		paths, err := router.BGPRoute("203.0.113.0/24")
		if err != nil {
			return err
		}
		if len(paths) != 0 {
			return fmt.Errorf("the router accepted 203.0.113.0/24, which is no configured VIP: %d paths", len(paths))
		}
		return nil
	}); err != nil {
		t.Error(err)
	}

	// The router exports nothing: d1 never hears of d2's VIP.
	if paths, err := dirs[0].frr.BGPRoute("198.18.0.54/32"); err != nil || len(paths) != 0 {
		t.Errorf("d1 learned 198.18.0.54/32 from the router (%d paths, %v); the export policy must send nothing", len(paths), err)
	}

	// d3 ends its graceful shutdown: all three carry the traffic.
	dirs[2].frr.Configure("route-map DIRECTORD-TEST permit 10\n no set community\nexit\n")
	took := netlab.MustWait(t, 10*time.Second, "ECMP over all three directors", func() error {
		return gatewaysAre(rtr, "198.18.0.10", "10.0.1.11", "10.0.1.12", "10.0.1.13")
	})
	t.Logf("measured: d3 back in the ECMP set %v after it dropped GRACEFUL_SHUTDOWN", took.Round(time.Millisecond))
}

// directorBGP is an FRR bgpd standing in for a director: it announces the
// shared VIP, its own VIP and a prefix that is no VIP; gshut tags the shared
// VIP with GRACEFUL_SHUTDOWN.
func directorBGP(asn int, addr string, gshut bool) string {
	own := map[string]string{"10.0.1.11": "198.18.0.53", "10.0.1.12": "198.18.0.54", "10.0.1.13": "198.18.0.55"}[addr]
	rm := "route-map DIRECTORD-TEST permit 10\nexit\n"
	if gshut {
		rm = "route-map DIRECTORD-TEST permit 10\n set community graceful-shutdown\nexit\n"
	}
	return rm + fmt.Sprintf(`router bgp %d
 bgp router-id %s
 no bgp ebgp-requires-policy
 no bgp network import-check
 bgp route-map delay-timer 1
 neighbor 10.0.1.1 remote-as 65000
 neighbor 10.0.1.1 timers 1 3
 neighbor 10.0.1.1 timers connect 1
 neighbor 10.0.1.1 advertisement-interval 0
 address-family ipv4 unicast
  network 198.18.0.10/32 route-map DIRECTORD-TEST
  network %s/32
  network 203.0.113.0/24
 exit-address-family
exit
`, asn, addr, own)
}

// gatewaysAre checks the next hops of the router's FIB route to dst.
func gatewaysAre(rtr *netlab.NS, dst string, want ...string) error {
	got, err := rtr.Gateways(dst)
	if err != nil {
		return err
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		return fmt.Errorf("route to %s via %v, want %v", dst, got, want)
	}
	return nil
}
