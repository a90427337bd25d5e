//go:build linux && privileged

package acceptance

import (
	"fmt"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedGracefulShutdown: SIGTERM on directord. The router first sees
// the director's route with the GRACEFUL_SHUTDOWN community (65535:0, which
// FRR prints as "graceful-shutdown"); the generated import policy drops its
// local preference, so the next hop leaves the FIB while the route is still
// announced; then the route is withdrawn, the session ends with a Cease and
// directord exits 0.
func TestPrivilegedGracefulShutdown(t *testing.T) {
	c := dirConf{holdDown: 200 * time.Millisecond}
	l := newLab(t, c, c)
	l.startBGP()
	d1, d2 := l.dirs[0], l.dirs[1]
	l.waitFIB(time.Now(), 30*time.Second, vip4, addrs4(d1, d2)...)

	sig := time.Now()
	if err := d1.daemon.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	// Each poll reads the FIB first and BGP right after it, so when the FIB
	// first lacks director 1, the BGP read that follows says whether its
	// route was still there, carrying GRACEFUL_SHUTDOWN.
	var gshutSeen, fibGone, withdrawn time.Duration
	var pathAtFIBLoss string
	_, err := netlab.Wait(10*time.Second, 10*time.Millisecond, func() error {
		gws, err := l.rtr.Gateways(vip4)
		if err != nil {
			return err
		}
		paths, err := l.frr.BGPRoute(vip4 + "/32")
		if err != nil {
			return err
		}
		now := time.Since(sig)
		var mine *netlab.BGPPath
		for i := range paths {
			if paths[i].Peer.PeerID == dirAddr4(1) {
				mine = &paths[i]
			}
		}
		gshut := mine != nil && strings.Contains(mine.Communities(), "graceful-shutdown")
		if gshut && gshutSeen == 0 {
			gshutSeen = now
		}
		if !slices.Contains(gws, dirAddr4(1)) && fibGone == 0 {
			fibGone = now
			switch {
			case mine == nil:
				pathAtFIBLoss = "withdrawn"
			case gshut:
				pathAtFIBLoss = "graceful-shutdown"
			default:
				pathAtFIBLoss = fmt.Sprintf("announced with communities %q", mine.Communities())
			}
		}
		if mine == nil && withdrawn == 0 {
			withdrawn = now
		}
		if fibGone == 0 || withdrawn == 0 {
			return fmt.Errorf("director 1: next hops %v, path %v", gws, mine != nil)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("graceful shutdown on the router: %v", err)
	}
	t.Logf("measured after SIGTERM: GRACEFUL_SHUTDOWN seen on the router %s, next hop gone from the FIB %s (route then %s), route withdrawn %s (graceful_shutdown 1s)",
		ms(gshutSeen), ms(fibGone), pathAtFIBLoss, ms(withdrawn))
	if gshutSeen == 0 {
		t.Errorf("the router never saw director 1's route with GRACEFUL_SHUTDOWN before it was withdrawn")
	}
	if pathAtFIBLoss != "graceful-shutdown" {
		t.Errorf("when director 1's next hop left the FIB its route was %s; want it still announced with GRACEFUL_SHUTDOWN (community first, then the next hop goes)", pathAtFIBLoss)
	}
	if gshutSeen >= withdrawn {
		t.Errorf("GRACEFUL_SHUTDOWN seen %s after SIGTERM, not before the withdraw at %s", gshutSeen, withdrawn)
	}

	if err := d1.daemon.Wait(15 * time.Second); err != nil {
		t.Errorf("directord after SIGTERM: %v, want exit status 0", err)
	}
	t.Logf("measured: directord exited %s after SIGTERM (graceful_shutdown 1s + linger 1s)", ms(time.Since(sig)))
	netlab.MustWait(t, 5*time.Second, "the router to record the Cease", func() error {
		n, err := l.neighbor(dirAddr4(1))
		if err != nil {
			return err
		}
		if n.State == "Established" || !strings.HasPrefix(n.LastNotification, "Cease") {
			return fmt.Errorf("neighbor is %s, last notification %q", n.State, n.LastNotification)
		}
		return nil
	})
	if got := l.gateways(vip4); !slices.Equal(got, addrs4(d2)) {
		t.Errorf("router FIB after director 1 stopped: %v, want only %s", got, dirAddr4(2))
	}
}
