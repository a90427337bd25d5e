//go:build linux && privileged

package acceptance

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedMD5: the router is generated from director files that agree
// on the MD5 password; director 2's daemon then runs with a wrong one. Its
// session never establishes (and its VIP never reaches the FIB) although it
// wants to advertise, while director 1 with the right password does.
func TestPrivilegedMD5(t *testing.T) {
	good := dirConf{password: "right-key", holdDown: 200 * time.Millisecond}
	bad := good
	bad.daemonPassword = "wrong-key"
	l := newLab(t, good, bad)
	l.startBGP()
	d1, d2 := l.dirs[0], l.dirs[1]
	up := l.waitFIB(time.Now(), 30*time.Second, vip4, addrs4(d1)...)
	t.Logf("measured: director 1 (right password) in the FIB %s after start", ms(up))
	// Director 2 does want to announce: only the password stops it.
	if _, _, err := d2.daemon.WaitOutput(`"msg":"VIP advertised"`, 0, 10*time.Second); err != nil {
		t.Fatalf("director 2 never decided to advertise its VIP: %v", err)
	}
	err := netlab.Hold(5*time.Second, 200*time.Millisecond, func() error {
		n, err := l.neighbor(dirAddr4(2))
		if err != nil {
			return err
		}
		if n.State == "Established" || n.Established != 0 {
			return fmt.Errorf("session with the wrong password: %s, established %d times", n.State, n.Established)
		}
		if gws := l.gateways(vip4); !slices.Equal(gws, addrs4(d1)) {
			return fmt.Errorf("FIB next hops %v, want only %s", gws, dirAddr4(1))
		}
		if n1 := l.mustNeighbor(dirAddr4(1)); n1.State != "Established" {
			return fmt.Errorf("session with the right password: %s", n1.State)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
