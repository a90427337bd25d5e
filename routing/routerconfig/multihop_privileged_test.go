//go:build linux && privileged

package routerconfig

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedBIRDMultihopNextHop runs the BIRD configuration generated for
// an eBGP director two hops away (behind another router, mid) and checks that
// BIRD installs the VIP through mid: it resolves the director's next hop
// recursively through its own table, which learns the router's static route
// toward the director from the kernel (nothing else: a route of the
// operator's elsewhere stays out). Before that learning, BIRD installed the
// VIP as unreachable.
//
//	rtr eth0 10.0.8.1 -- mid 10.0.8.2 | 10.0.9.1 -- d1 10.0.9.11 (FRR bgpd as the director)
func TestPrivilegedBIRDMultihopNextHop(t *testing.T) {
	cfg := parse(t, "d1.yaml", `director: { name: d1 }
bgp:
  asn: 65101
  router_id: 10.0.9.11
  peers:
    - { address: 10.0.8.1, asn: 65000, local_address: 10.0.9.11, multihop_ttl: 2, hold_time: 3s }
`+svc)
	out, err := Generate("bird", []*config.Config{cfg}, Options{})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	lab := netlab.New(t)
	rtr, mid, d1 := lab.Namespace("rtr"), lab.Namespace("mid"), lab.Namespace("d1")
	rtr.Router()
	mid.Router()
	lab.Link(rtr, []string{"10.0.8.1/24"}, mid, []string{"10.0.8.2/24"})
	lab.Link(mid, []string{"10.0.9.1/24"}, d1, []string{"10.0.9.11/24"})
	rtr.MustRun("ip", "route", "add", "10.0.9.0/24", "via", "10.0.8.2")
	rtr.MustRun("ip", "route", "add", "203.0.113.0/24", "via", "10.0.8.2") // the operator's: not learned
	d1.MustRun("ip", "route", "add", "default", "via", "10.0.9.1")
	d1.StartFRR(fmt.Sprintf(`router bgp 65101
 bgp router-id 10.0.9.11
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 10.0.8.1 remote-as 65000
 neighbor 10.0.8.1 update-source 10.0.9.11
 neighbor 10.0.8.1 ebgp-multihop 2
 neighbor 10.0.8.1 timers 1 3
 neighbor 10.0.8.1 timers connect 1
 address-family ipv4 unicast
  network %s/32
 exit-address-family
exit
`, "198.18.0.10"), "bgpd")
	bird := rtr.StartBIRD(string(out))
	netlab.MustWait(t, 20*time.Second, "the VIP in the router's FIB via mid", func() error {
		return gatewaysAre(rtr, "198.18.0.10", "10.0.8.2")
	})
	learned, err := bird.Birdc("show", "route", "protocol", "directord_kernel_ipv4")
	if err != nil {
		t.Fatalf("birdc: %v\n%s", err, learned)
	}
	if !strings.Contains(string(learned), "10.0.9.0/24") || strings.Contains(string(learned), "203.0.113.0/24") {
		t.Errorf("BIRD learned from the kernel:\n%s\nwant the route toward the director (10.0.9.0/24) and not the operator's 203.0.113.0/24", learned)
	}
}
