//go:build linux && privileged

package acceptance

import (
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedExportsOnlyVIPs: only configured VIPs reach the router.
//
// At daemon level nothing can be injected into the speaker behind its back;
// routing/bgp's TestPrivilegedECMPAndWithdraw does that (a route put straight
// into GoBGP's RIB is dropped by the export policy). Here the addresses that a
// director has besides its VIPs must stay home:
//
//   - director 1 has an address bound on lo by hand (203.0.113.7/32), a static
//     kernel route (203.0.113.0/24), and a second service whose health target
//     is its own link address (10.0.1.11:8080): none is exported, only the VIP.
//   - director 2 runs a file with an extra VIP (198.18.0.99) that the file
//     given to router-config does not have: the director exports it (it is
//     its VIP), and the router's generated import policy drops it.
//
// To see what the directors send, before the router's import policy, the
// test adds `soft-reconfiguration inbound` to the router's neighbors: it only
// keeps a copy of what arrives and changes no routing decision.
func TestPrivilegedExportsOnlyVIPs(t *testing.T) {
	const (
		operatorAddr = "203.0.113.7"
		operatorNet  = "203.0.113.0/24"
		strayVIP     = "198.18.0.99"
	)
	c1 := dirConf{holdDown: 200 * time.Millisecond,
		extraServices: service("admin", vip4, "9090", dirAddr4(1)+":"+port4)}
	c2 := dirConf{holdDown: 200 * time.Millisecond,
		daemonOnlyServices: service("stray", strayVIP, port4, "")}
	l := newLab(t, c1, c2)
	d1, d2 := l.dirs[0], l.dirs[1]
	d1.ns.MustRun("ip", "addr", "add", operatorAddr+"/32", "dev", "lo")
	d1.ns.MustRun("ip", "route", "add", operatorNet, "dev", d1.ifName, "proto", "static")
	l.startRouterBGP()
	l.frr.Configure(fmt.Sprintf("router bgp %d\n address-family ipv4 unicast\n  neighbor %s soft-reconfiguration inbound\n  neighbor %s soft-reconfiguration inbound\n exit-address-family\nexit\n",
		routerASN, dirAddr4(1), dirAddr4(2)))
	l.startDirectors()
	l.waitFIB(time.Now(), 30*time.Second, vip4, addrs4(d1, d2)...)

	// Positive control: director 2 does send its extra VIP.
	netlab.MustWait(t, 10*time.Second, "director 2's extra VIP to arrive at the router", func() error {
		got, err := l.received(dirAddr4(2))
		if err != nil {
			return err
		}
		if !slices.Contains(got, strayVIP+"/32") {
			return fmt.Errorf("received from director 2: %v", got)
		}
		return nil
	})
	err := netlab.Hold(3*time.Second, 200*time.Millisecond, func() error {
		var errs []error
		for _, c := range []struct {
			peer string
			want []string
		}{
			{dirAddr4(1), []string{vip4 + "/32"}},
			{dirAddr4(2), []string{vip4 + "/32", strayVIP + "/32"}},
		} {
			got, err := l.received(c.peer)
			if err != nil {
				return err
			}
			if !slices.Equal(got, c.want) {
				errs = append(errs, fmt.Errorf("router received %v from %s, want exactly %v", got, c.peer, c.want))
			}
			if n := l.mustNeighbor(c.peer); n.State != "Established" {
				errs = append(errs, fmt.Errorf("session with %s is %s (last reset %q)", c.peer, n.State, n.LastReset))
			}
		}
		for _, p := range []string{strayVIP + "/32", operatorAddr + "/32", operatorNet} {
			if paths, err := l.frr.BGPRoute(p); err != nil || len(paths) != 0 {
				errs = append(errs, fmt.Errorf("router's BGP table has %d paths for %s (err %v)", len(paths), p, err))
			}
		}
		for _, p := range []string{strayVIP, operatorAddr, operatorNet} {
			if gws := l.gateways(p); len(gws) != 0 {
				errs = append(errs, fmt.Errorf("router FIB routes %s via %v", p, gws))
			}
		}
		if n, err := l.rtr.CountRoutes(false, "bgp"); err != nil || n != 1 {
			errs = append(errs, fmt.Errorf("router FIB has %d BGP routes (err %v), want 1 (the VIP)", n, err))
		}
		return errors.Join(errs...)
	})
	if err != nil {
		t.Error(err)
	}
	r1, _ := l.received(dirAddr4(1))
	r2, _ := l.received(dirAddr4(2))
	t.Logf("router received from director 1: %v, from director 2: %v; BGP routes in its FIB: only %s", r1, r2, vip4)
}

// received returns the IPv4 prefixes the router received from a neighbor,
// before its import policy (needs soft-reconfiguration inbound), sorted.
func (l *aLab) received(peer string) ([]string, error) {
	var r struct {
		Routes map[string]any `json:"receivedRoutes"`
	}
	if err := l.frr.VtyshJSON(fmt.Sprintf("show bgp ipv4 unicast neighbors %s received-routes json", peer), &r); err != nil {
		return nil, err
	}
	var out []string
	for p := range r.Routes {
		out = append(out, p)
	}
	slices.Sort(out)
	return out, nil
}
