//go:build linux && privileged

package acceptance

import (
	"fmt"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedFrozenDirector: a directord that stops answering (SIGSTOP)
// is out of the router's FIB within 1 s with BFD 100 ms x 3, and within hold
// time + 1 s without BFD (hold 3 s). After SIGCONT the session comes back
// once and stays up for 10 s: no flap loop.
func TestPrivilegedFrozenDirector(t *testing.T) {
	tests := []struct {
		name  string
		bfd   bool
		bound time.Duration
	}{
		{name: "bfd 100ms x3", bfd: true, bound: time.Second},
		{name: "hold time 3s", bfd: false, bound: 3*time.Second + time.Second},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := dirConf{bfd: tc.bfd, hold: 3 * time.Second, holdDown: 200 * time.Millisecond}
			l := newLab(t, c, c)
			l.startBGP()
			d1, d2 := l.dirs[0], l.dirs[1]
			peer := dirAddr4(1)
			l.waitFIB(time.Now(), 30*time.Second, vip4, addrs4(d1, d2)...)
			if tc.bfd {
				// Freeze only a director whose BFD session the router
				// has seen up for a while.
				l.waitBFDStable(peer, time.Second)
			}
			before := l.mustNeighbor(peer)

			frozen := time.Now()
			if err := d1.daemon.Signal(syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			gone := l.waitFIB(frozen, tc.bound+3*time.Second, vip4, addrs4(d2)...)
			t.Logf("measured: frozen director left the router FIB %s after SIGSTOP (bound %s)", ms(gone), tc.bound)
			if gone > tc.bound {
				t.Errorf("frozen director left the FIB after %s, want within %s", ms(gone), tc.bound)
			}
			if n := l.mustNeighbor(peer); n.State == "Established" {
				t.Errorf("the router still has the session with the frozen director: %s", n.State)
			} else {
				t.Logf("router: session %s, last reset %q", n.State, n.LastReset)
			}

			resumed := time.Now()
			if err := d1.daemon.Signal(syscall.SIGCONT); err != nil {
				t.Fatal(err)
			}
			back := l.waitFIB(resumed, 30*time.Second, vip4, addrs4(d1, d2)...)
			t.Logf("measured: resumed director back in the router FIB %s after SIGCONT", ms(back))
			up := l.mustNeighbor(peer)
			if up.Established != before.Established+1 {
				t.Errorf("sessions established %d -> %d, want exactly one more (a flap while recovering)", before.Established, up.Established)
			}
			if tc.bfd {
				// The director switches BFD on once BGP is up again.
				l.waitBFDStable(peer, 0)
			}
			held := time.Now()
			err := netlab.Hold(10*time.Second, 200*time.Millisecond, func() error {
				n, err := l.neighbor(peer)
				if err != nil {
					return err
				}
				if n.State != "Established" || n.Established != up.Established {
					return fmt.Errorf("session flapped: %s, established %d times (was %d), last reset %q", n.State, n.Established, up.Established, n.LastReset)
				}
				if tc.bfd && (n.BFD == nil || n.BFD.Status != "Up") {
					return fmt.Errorf("bfd %+v", n.BFD)
				}
				if gws := l.gateways(vip4); !slices.Contains(gws, peer) {
					return fmt.Errorf("FIB next hops %v lack the resumed director", gws)
				}
				return nil
			})
			if err != nil {
				t.Errorf("after SIGCONT: %v", err)
			} else {
				t.Logf("measured: session (and BFD: %v) stayed up %s after recovery", tc.bfd, ms(time.Since(held)))
			}
		})
	}
}
