//go:build linux && privileged

package acceptance

import (
	"context"
	"fmt"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/lab/netlab"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// grRestart is the directors' bgp.graceful_restart.restart_time in the
// Graceful Restart test: long enough that a route kept for it is told apart
// from every faster way out (BFD, the drain's graceful_shutdown of 1 s).
const grRestart = 10 * time.Second

// TestPrivilegedGracefulRestart: three directors with Graceful Restart and
// BFD 100 ms x 3 behind FRR configured by router-config
// (docs/operations.md, "Restart, upgrade and Graceful Restart").
//   - directord on d1 stopped with SIGTERM and started again: the router's
//     route to the VIP does not change at all (ip monitor route sees
//     nothing) and the session is back within the restart time;
//   - d3 drained: its next hop leaves at once (graceful_shutdown 1 s), not
//     after the restart time;
//   - directord on d1 killed (SIGKILL) and not restarted, while d2 freezes
//     (SIGSTOP: a dead host, whose TCP sessions do not close): d2 leaves
//     within the BFD bound, d1 stays (its IPVS would keep forwarding) until
//     the restart time ends, then leaves.
func TestPrivilegedGracefulRestart(t *testing.T) {
	c := dirConf{bfd: true, hold: 3 * time.Second, holdDown: 200 * time.Millisecond, restartTime: grRestart}
	l := newLab(t, c, c, c)
	l.startBGP()
	d1, d2, d3 := l.dirs[0], l.dirs[1], l.dirs[2]
	l.waitFIB(time.Now(), 30*time.Second, vip4, addrs4(d1, d2, d3)...)
	for _, d := range l.dirs {
		l.waitBFDStable(dirAddr4(d.k), time.Second)
	}

	l.restartKeepsRoute(d1)

	drained := time.Now()
	drainDirector(t, d3)
	gone := l.waitFIB(drained, 10*time.Second, vip4, addrs4(d1, d2)...)
	t.Logf("measured: drained director left the FIB %s after the drain (graceful_shutdown 1s)", ms(gone))
	if gone >= grRestart-time.Second {
		t.Errorf("drained director left the FIB after %s: the drain must withdraw at once, not wait for the restart time %s", ms(gone), grRestart)
	}

	l.waitBFDStable(dirAddr4(d1.k), time.Second)
	l.waitBFDStable(dirAddr4(d2.k), time.Second)
	killed := time.Now()
	if err := d1.daemon.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := d2.daemon.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d2.daemon.Signal(syscall.SIGCONT) })
	dead := l.waitFIB(killed, 5*time.Second, vip4, addrs4(d1)...)
	t.Logf("measured: frozen (dead) director left the FIB %s after SIGSTOP (BFD 100ms x 3)", ms(dead))
	if dead > time.Second {
		t.Errorf("a dead director left the FIB after %s, want within the BFD bound (1s)", ms(dead))
	}
	left := l.waitFIB(killed, grRestart+10*time.Second, vip4)
	t.Logf("measured: director whose directord was killed left the FIB %s after SIGKILL (restart_time %s)", ms(left), grRestart)
	if left < grRestart-time.Second {
		t.Errorf("killed director left the FIB after %s, want its route kept for the restart time %s", ms(left), grRestart)
	}
}

// restartKeepsRoute stops d's directord with SIGTERM, starts it again and
// waits until the router has the session and BFD back, counting the changes
// of the router's route to the VIP meanwhile: there must be none.
func (l *aLab) restartKeepsRoute(d *director) {
	t := l.t
	t.Helper()
	peer := dirAddr4(d.k)
	before := l.mustNeighbor(peer)
	want := l.gateways(vip4)
	var back time.Duration
	evs := l.rtr.RouteChanges(vip4, func() error {
		stopped := time.Now()
		if err := d.daemon.Signal(syscall.SIGTERM); err != nil {
			return err
		}
		if err := d.daemon.Wait(10 * time.Second); err != nil {
			return fmt.Errorf("directord after SIGTERM: %w", err)
		}
		t.Logf("measured: directord exited %s after SIGTERM", ms(time.Since(stopped)))
		l.startDaemon(d)
		_, err := netlab.Wait(2*grRestart, 20*time.Millisecond, func() error {
			n, err := l.neighbor(peer)
			if err != nil {
				return err
			}
			if n.State != "Established" || n.Established != before.Established+1 {
				return fmt.Errorf("session %s, established %d times (was %d)", n.State, n.Established, before.Established)
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("session after the restart: %w", err)
		}
		back = time.Since(stopped)
		l.waitBFDStable(peer, time.Second)
		if gws := l.gateways(vip4); fmt.Sprint(gws) != fmt.Sprint(want) {
			return fmt.Errorf("next hops after the restart %v, want %v", gws, want)
		}
		return nil
	})
	t.Logf("measured: session back %s after SIGTERM (restart_time %s); route changes on the router meanwhile: %d", ms(back), grRestart, len(evs))
	for _, e := range evs {
		t.Errorf("the router's route changed during the restart (deleted %v): %s", e.Deleted, e.Text)
	}
	if back > grRestart {
		t.Errorf("session back after %s, beyond the restart time %s", ms(back), grRestart)
	}
}

// drainDirector drains every VIP of d over its API socket.
func drainDirector(t *testing.T, d *director) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+filepath.Join(d.dir, "directord.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := directorv1.NewDirectorClient(conn).DrainDirector(ctx, &directorv1.DrainDirectorRequest{Reason: "test"}); err != nil {
		t.Fatalf("drain %s: %v", d.name, err)
	}
}
