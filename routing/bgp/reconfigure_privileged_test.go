//go:build linux && privileged

package bgp

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/netlab"
)

// frrBFDPeer is what the test reads of FRR's `show bfd peer <addr> json`:
// the timers the remote end (the speaker) announces.
type frrBFDPeer struct {
	Status     string `json:"status"`
	RemoteRx   int    `json:"remote-receive-interval"`
	RemoteTx   int    `json:"remote-transmit-interval"`
	RemoteMult int    `json:"remote-detect-multiplier"`
}

// TestPrivilegedReloadTimers: a reload that changes only a peer's BGP
// timers is applied in place: the router never loses the session, its BFD
// session or the director's route. A change of BFD timers cannot be (GoBGP
// re-creates its BFD session, and the router's BFD, seeing a new session
// come up Down, takes the BGP session down): it resets the session once,
// and the session comes back with the new timers.
func TestPrivilegedReloadTimers(t *testing.T) {
	t.Run("bgp timers", func(t *testing.T) {
		l, d1, before := reloadLab(t)
		next := l.speakerConfig(1)
		slowBFD(&next)
		next.Peers[0].HoldTime, next.Peers[0].Keepalive = 6*time.Second, 2*time.Second
		if err := d1.do(helperCmd{Op: "reconfigure", BGP: &next}); err != nil {
			t.Fatal(err)
		}
		err := netlab.Hold(6*time.Second, 50*time.Millisecond, func() error { return l.sessionHeld(before) })
		if err != nil {
			t.Fatalf("after a reload of BGP timers: %v\n%s", err, l.debug())
		}
	})
	t.Run("bfd timers", func(t *testing.T) {
		l, d1, before := reloadLab(t)
		next := l.speakerConfig(1)
		next.Peers[0].BFD = &config.BFD{MinInterval: 300 * time.Millisecond, Multiplier: 5}
		if err := d1.do(helperCmd{Op: "reconfigure", BGP: &next}); err != nil {
			t.Fatal(err)
		}
		var got frrBFDPeer
		back, err := netlab.Wait(30*time.Second, 50*time.Millisecond, func() error {
			n, err := l.neighbor(dirAddr4(1))
			if err != nil {
				return err
			}
			if n.State != "Established" || n.Established == before.Established {
				return fmt.Errorf("session %s, established %d times", n.State, n.Established)
			}
			if err := l.frr.VtyshJSON("show bfd peer "+dirAddr4(1)+" json", &got); err != nil {
				return err
			}
			if got.Status != "up" || got.RemoteMult != 5 {
				return fmt.Errorf("router's BFD session %+v, want up with multiplier 5", got)
			}
			if gws := l.gateways(vip4); !slices.Contains(gws, dirAddr4(1)) {
				return fmt.Errorf("next hops %v", gws)
			}
			return nil
		})
		if err != nil {
			t.Fatalf("after a reload of BFD timers: %v\n%s", err, l.debug())
		}
		t.Logf("session back with the new BFD timers %s after the reload: %+v", back.Round(time.Millisecond), got)
		// Once back, it stays: one reset, not a session that keeps
		// meeting a stale BFD session.
		settled, err := l.neighbor(dirAddr4(1))
		if err != nil {
			t.Fatal(err)
		}
		if err := netlab.Hold(4*time.Second, 50*time.Millisecond, func() error { return l.sessionHeld(settled) }); err != nil {
			t.Fatalf("after the BFD reset: %v\n%s", err, l.debug())
		}
	})
}

// slowBFD gives director 1 BFD at 300 ms x 3: what is under test is the
// reload, and 100 ms x 3 has expired by itself on this shared machine under
// load (GoBGP "Expired" before the reload was sent).
func slowBFD(c *config.BGP) {
	c.Peers[0].BFD = &config.BFD{MinInterval: 300 * time.Millisecond, Multiplier: 3}
}

// reloadLab starts two directors with BFD announcing the VIP and returns
// director 1's speaker and the router's view of its session.
func reloadLab(t *testing.T) (*bgpLab, *speakerProc, netlab.BGPNeighbor) {
	l := newBGPLab(t, labOptions{directors: 2, bfd: true})
	d1, d2 := l.startSpeaker(1, slowBFD), l.startSpeaker(2, nil)
	d1.set(vip4Ad)
	d2.set(vip4Ad)
	l.waitGateways(15*time.Second, vip4, dirAddr4(1), dirAddr4(2))
	l.waitBFDStable(dirAddr4(1), time.Second)
	before, err := l.neighbor(dirAddr4(1))
	if err != nil {
		t.Fatal(err)
	}
	return l, d1, before
}

// sessionHeld checks that director 1's session, its BFD session and its
// route are as they were before a reload.
func (l *bgpLab) sessionHeld(before netlab.BGPNeighbor) error {
	n, err := l.neighbor(dirAddr4(1))
	if err != nil {
		return err
	}
	if n.State != "Established" || n.Established != before.Established {
		return fmt.Errorf("session flapped: %s, established %d times (was %d), last reset %q", n.State, n.Established, before.Established, n.LastReset)
	}
	if n.BFD == nil || n.BFD.Status != "Up" {
		return fmt.Errorf("router's BFD session for the director: %+v", n.BFD)
	}
	if gws := l.gateways(vip4); !slices.Contains(gws, dirAddr4(1)) {
		return fmt.Errorf("the director left the router's FIB: next hops %v", gws)
	}
	return nil
}
