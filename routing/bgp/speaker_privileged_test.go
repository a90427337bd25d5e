//go:build linux && privileged

package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/netlab"
	"github.com/anycast-director/director/routing"
)

var vip4Ad = routing.Advertisement{Prefix: netip.MustParsePrefix(vip4 + "/32")}

// TestPrivilegedECMPAndWithdraw: three speakers give the router three ECMP
// next hops; a speaker's withdraw removes exactly its next hop; a route
// injected into a speaker's RIB that is not an allowed VIP never reaches the
// router.
func TestPrivilegedECMPAndWithdraw(t *testing.T) {
	l := newBGPLab(t, labOptions{directors: 3})
	var sps []*speakerProc
	for k := 1; k <= 3; k++ {
		sp := l.startSpeaker(k, nil)
		sp.set(vip4Ad)
		sps = append(sps, sp)
	}
	d := l.waitGateways(15*time.Second, vip4, dirAddr4(1), dirAddr4(2), dirAddr4(3))
	t.Logf("three next hops in the router FIB %s after the speakers started", d.Round(time.Millisecond))

	sps[1].set()
	d = l.waitGateways(5*time.Second, vip4, dirAddr4(1), dirAddr4(3))
	t.Logf("withdraw of director 2 left the FIB after %s", d.Round(time.Millisecond))

	// A route behind the speaker's back, then a sentinel change sent after
	// it on the same session: once the sentinel is in the router, the
	// injected route would be too.
	const rogue = "203.0.113.0/24"
	if err := sps[0].do(helperCmd{Op: "inject", Prefix: netip.MustParsePrefix(rogue)}); err != nil {
		t.Fatal(err)
	}
	sps[0].set(routing.Advertisement{Prefix: vip4Ad.Prefix, Communities: []uint32{labDirectorASN<<16 | 77}})
	netlab.MustWait(t, 5*time.Second, "the sentinel community on the router", func() error {
		paths, err := l.frr.BGPRoute(vip4 + "/32")
		if err != nil {
			return err
		}
		for _, p := range paths {
			if p.Peer.PeerID == dirAddr4(1) && strings.Contains(p.Communities(), "65100:77") {
				return nil
			}
		}
		return fmt.Errorf("no path from %s with 65100:77 yet", dirAddr4(1))
	})
	if paths, err := l.frr.BGPRoute(rogue); err != nil || len(paths) != 0 {
		t.Errorf("router has %d paths for %s (err %v): a prefix that is not an allowed VIP reached it", len(paths), rogue, err)
	}
	if gws := l.gateways(rogue); len(gws) != 0 {
		t.Errorf("router FIB has %s via %v", rogue, gws)
	}
}

// TestPrivilegedGracefulShutdown walks the drain the announcer runs
// (RFC 8326): re-advertise with GRACEFUL_SHUTDOWN and a worse MED, then
// withdraw, then Stop with a Cease; each step is checked on the router.
func TestPrivilegedGracefulShutdown(t *testing.T) {
	l := newBGPLab(t, labOptions{directors: 2})
	d1, d2 := l.startSpeaker(1, nil), l.startSpeaker(2, nil)
	d1.set(vip4Ad)
	d2.set(vip4Ad)
	l.waitGateways(15*time.Second, vip4, dirAddr4(1), dirAddr4(2))

	med := uint32(1000)
	d1.set(routing.Advertisement{Prefix: vip4Ad.Prefix, GracefulShutdown: true, MED: &med})
	netlab.MustWait(t, 5*time.Second, "GRACEFUL_SHUTDOWN on the router", func() error {
		paths, err := l.frr.BGPRoute(vip4 + "/32")
		if err != nil {
			return err
		}
		for _, p := range paths {
			if p.Peer.PeerID != dirAddr4(1) {
				continue
			}
			if !strings.Contains(p.Communities(), "graceful-shutdown") || p.MED == nil || *p.MED != med {
				return fmt.Errorf("path from director 1: communities %q, med %v", p.Communities(), p.MED)
			}
			return nil
		}
		return fmt.Errorf("no path from director 1")
	})
	// FRR lowers the local preference of GRACEFUL_SHUTDOWN routes, so the
	// draining director leaves the ECMP set while it still announces.
	d := l.waitGateways(5*time.Second, vip4, dirAddr4(2))
	t.Logf("draining director out of the FIB %s after GRACEFUL_SHUTDOWN was seen", d.Round(time.Millisecond))
	if paths, _ := l.frr.BGPRoute(vip4 + "/32"); len(paths) != 2 {
		t.Errorf("router has %d paths, want 2: the draining director must still announce before the withdraw", len(paths))
	}

	d1.set()
	netlab.MustWait(t, 5*time.Second, "the withdraw on the router", func() error {
		paths, err := l.frr.BGPRoute(vip4 + "/32")
		if err != nil {
			return err
		}
		for _, p := range paths {
			if p.Peer.PeerID == dirAddr4(1) {
				return fmt.Errorf("director 1 still announces")
			}
		}
		return nil
	})
	if err := d1.do(helperCmd{Op: "stop"}); err != nil {
		t.Fatal(err)
	}
	if err := d1.proc.Wait(5 * time.Second); err != nil {
		t.Errorf("speaker exit: %v, want status 0", err)
	}
	netlab.MustWait(t, 5*time.Second, "the router to log the Cease", func() error {
		n, err := l.neighbor(dirAddr4(1))
		if err != nil {
			return err
		}
		if n.State == "Established" || n.LastNotification != "Cease/Administrative Shutdown" || n.LastShutdownMessage != shutdownCommunication {
			return fmt.Errorf("neighbor is %s, last notification %q %q", n.State, n.LastNotification, n.LastShutdownMessage)
		}
		return nil
	})
	if gws := l.gateways(vip4); len(gws) != 1 || gws[0] != dirAddr4(2) {
		t.Errorf("router FIB after director 1 stopped: %v, want only %s", gws, dirAddr4(2))
	}
}

// TestPrivilegedFrozenSpeaker: a speaker that stops answering (SIGSTOP) is
// out of the router's FIB within 1 s with BFD 100 ms x 3, within hold time +
// 1 s without; after SIGCONT its session comes back and stays up 10 s.
func TestPrivilegedFrozenSpeaker(t *testing.T) {
	tests := []struct {
		name  string
		bfd   bool
		bound time.Duration
	}{
		{name: "bfd 100ms x3", bfd: true, bound: time.Second},
		{name: "hold time 3s", bfd: false, bound: 4 * time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l := newBGPLab(t, labOptions{directors: 2, bfd: tc.bfd, extraFRR: "debug bfd peer\ndebug bgp bfd\n"})
			d1, d2 := l.startSpeaker(1, nil), l.startSpeaker(2, nil)
			d1.set(vip4Ad)
			d2.set(vip4Ad)
			l.waitGateways(15*time.Second, vip4, dirAddr4(1), dirAddr4(2))
			if tc.bfd {
				l.waitBFDStable(dirAddr4(1), time.Second)
			}

			if err := d1.proc.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			gone := l.waitGateways(tc.bound+2*time.Second, vip4, dirAddr4(2))
			t.Logf("frozen speaker left the router FIB after %s (bound %s)", gone.Round(time.Millisecond), tc.bound)
			if gone > tc.bound {
				t.Errorf("frozen speaker left the FIB after %s, want within %s", gone, tc.bound)
			}
			before, err := l.neighbor(dirAddr4(1))
			if err != nil {
				t.Fatal(err)
			}

			if err := d1.proc.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			back := l.waitGateways(20*time.Second, vip4, dirAddr4(1), dirAddr4(2))
			t.Logf("resumed speaker back in the FIB after %s", back.Round(time.Millisecond))
			up, err := l.neighbor(dirAddr4(1))
			if err != nil {
				t.Fatal(err)
			}
			if up.Established != before.Established+1 {
				t.Errorf("sessions established %d -> %d, want one more (no flap during recovery)", before.Established, up.Established)
			}
			if tc.bfd {
				// The re-created peer starts a fresh BFD session once BGP
				// is up (bfd.go); it comes up a second or two later.
				l.waitBFDStable(dirAddr4(1), 0)
			}
			err = netlab.Hold(10*time.Second, 200*time.Millisecond, func() error {
				n, err := l.neighbor(dirAddr4(1))
				if err != nil {
					return err
				}
				if n.State != "Established" || n.Established != up.Established {
					return fmt.Errorf("session flapped: %s, established %d times (was %d), last reset %q", n.State, n.Established, up.Established, n.LastReset)
				}
				if tc.bfd && (n.BFD == nil || n.BFD.Status != "Up") {
					return fmt.Errorf("bfd %+v", n.BFD)
				}
				// Only the resumed director is under test: director 2's
				// own BFD may drop a beat on a loaded machine.
				if gws := l.gateways(vip4); !slices.Contains(gws, dirAddr4(1)) {
					return fmt.Errorf("FIB next hops %v", gws)
				}
				return nil
			})
			if err != nil {
				t.Errorf("after SIGCONT: %v\n%s", err, l.debug())
			}
		})
	}
}

// TestPrivilegedSessionSecurity: a speaker whose MD5 password differs from
// the router's never establishes; one with the right password does, and so
// does one with TTL security (GTSM) on both sides.
func TestPrivilegedSessionSecurity(t *testing.T) {
	l := newBGPLab(t, labOptions{
		directors:       3,
		routerPasswords: map[int]string{1: "right-key", 2: "right-key"},
		routerNeighbor:  map[int]string{3: "ttl-security hops 1"},
	})
	good := l.startSpeaker(1, func(c *config.BGP) { c.Peers[0].Password = "right-key" })
	bad := l.startSpeaker(2, func(c *config.BGP) { c.Peers[0].Password = "wrong-key" })
	gtsm := l.startSpeaker(3, func(c *config.BGP) { c.Peers[0].TTLSecurity = 1 })
	for _, sp := range []*speakerProc{good, bad, gtsm} {
		sp.set(vip4Ad)
	}
	l.waitGateways(15*time.Second, vip4, dirAddr4(1), dirAddr4(3))
	err := netlab.Hold(5*time.Second, 200*time.Millisecond, func() error {
		n, err := l.neighbor(dirAddr4(2))
		if err != nil {
			return err
		}
		if n.State == "Established" || n.Established != 0 {
			return fmt.Errorf("session with the wrong password: %s, established %d times", n.State, n.Established)
		}
		if gws := l.gateways(vip4); len(gws) != 2 {
			return fmt.Errorf("FIB next hops %v", gws)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}

// TestPrivilegedIPv6: an IPv6 VIP is announced and withdrawn over an IPv6
// session, with the session's address as next hop.
func TestPrivilegedIPv6(t *testing.T) {
	l := newBGPLab(t, labOptions{directors: 2, ipv6: true})
	ad6 := routing.Advertisement{Prefix: netip.MustParsePrefix(vip6 + "/128")}
	d1, d2 := l.startSpeaker(1, nil), l.startSpeaker(2, nil)
	d1.set(vip4Ad, ad6)
	d2.set(vip4Ad, ad6)
	l.waitGateways(15*time.Second, vip6+"/128", dirAddr6(1), dirAddr6(2))
	l.waitGateways(5*time.Second, vip4, dirAddr4(1), dirAddr4(2))
	d1.set(vip4Ad)
	d := l.waitGateways(5*time.Second, vip6+"/128", dirAddr6(2))
	t.Logf("IPv6 withdraw left the FIB after %s", d.Round(time.Millisecond))
	d2.set()
	l.waitGateways(5*time.Second, vip6+"/128")
	if gws := l.gateways(vip4); len(gws) != 1 || gws[0] != dirAddr4(1) {
		t.Errorf("IPv4 next hops after the IPv6 withdraws: %v, want only %s", gws, dirAddr4(1))
	}
}
