//go:build linux && privileged

package acceptance

import (
	"testing"
	"time"
)

// TestPrivilegedECMPAndHealth: three directors announce vip4 over IPv4 and
// vip6 over IPv6 sessions; the router's FIB has one ECMP next hop per healthy
// director. A director whose listener stops is gone from the FIB within
// fall x interval + 1 s (per family: the IPv6 VIP is withdrawn over its IPv6
// session while the IPv4 one stays), and comes back when it listens again.
func TestPrivilegedECMPAndHealth(t *testing.T) {
	c := dirConf{ipv6: true, holdDown: 200 * time.Millisecond}
	l := newLab(t, c, c, c)
	start := time.Now()
	l.startBGP()
	all := l.dirs
	d1, d2, d3 := all[0], all[1], all[2]
	up4 := l.waitFIB(start, 30*time.Second, vip4, addrs4(all...)...)
	up6 := l.waitFIB(start, 10*time.Second, vip6Pfx, addrs6(all...)...)
	t.Logf("measured: three ECMP next hops in the router FIB %s (IPv4) and %s (IPv6) after the router started", ms(up4), ms(up6))

	// IPv4 health of director 2 fails; its IPv6 service stays healthy.
	stop := time.Now()
	l.setListener(d2, port4, false)
	gone := l.waitFIB(stop, dropBound+2*time.Second, vip4, addrs4(d1, d3)...)
	t.Logf("measured: director 2's listener on %s:%s stopped; its next hop left the router FIB after %s (bound %s)", vip4, port4, ms(gone), dropBound)
	if gone > dropBound {
		t.Errorf("director 2 left the IPv4 FIB %s after its listener stopped, want within fall x interval + 1 s = %s", ms(gone), dropBound)
	}
	if got := l.gateways(vip6Pfx); len(got) != 3 {
		t.Errorf("IPv6 next hops %v after director 2's IPv4 listener stopped, want all three (its IPv6 service is healthy)", got)
	}

	// IPv6: the VIP is withdrawn over the IPv6 session.
	stop = time.Now()
	l.setListener(d2, port6, false)
	gone = l.waitFIB(stop, dropBound+2*time.Second, vip6Pfx, addrs6(d1, d3)...)
	t.Logf("measured: director 2's listener on [%s]:%s stopped; its IPv6 next hop left the router FIB after %s (bound %s)", vip6, port6, ms(gone), dropBound)
	if gone > dropBound {
		t.Errorf("director 2 left the IPv6 FIB %s after its listener stopped, want within %s", ms(gone), dropBound)
	}

	// Listening again: back in both families (rise 1 + hold-down 200 ms).
	back := time.Now()
	l.setListener(d2, port4, true)
	l.setListener(d2, port6, true)
	b4 := l.waitFIB(back, 5*time.Second, vip4, addrs4(all...)...)
	b6 := l.waitFIB(back, 5*time.Second, vip6Pfx, addrs6(all...)...)
	t.Logf("measured: director 2 listening again; back in the router FIB after %s (IPv4), %s (IPv6) (rise 1 x %s + hold-down 200ms)", ms(b4), ms(b6), healthInterval)

	// Every director's IPv6 listener stops: the IPv6 route is gone, the IPv4
	// one keeps its three next hops.
	stop = time.Now()
	for _, d := range all {
		l.setListener(d, port6, false)
	}
	gone = l.waitFIB(stop, dropBound+2*time.Second, vip6Pfx)
	t.Logf("measured: all IPv6 listeners stopped; %s gone from the router FIB after %s", vip6, ms(gone))
	if got := l.gateways(vip4); len(got) != 3 {
		t.Errorf("IPv4 next hops %v after the IPv6 withdraws, want all three", got)
	}
}
