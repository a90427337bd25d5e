//go:build linux && privileged

package acceptance

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/lab/netlab"
	"github.com/anycast-director/director/lab/nslab"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// grRestart is the directors' bgp.graceful_restart.restart_time in the
// Graceful Restart test: long enough that a route kept for it is told apart
// from every faster way out (BFD, the drain's graceful_shutdown of 1 s).
const grRestart = 10 * time.Second

// grBFD is the directors' BFD interval (multiplier 3), and grDeadBound how
// soon a dead director must leave: the detection time plus a second for the
// router to act on a loaded machine. 100 ms x 3 fails by itself when four
// labs share two cores.
const (
	grBFD       = 300 * time.Millisecond
	grDeadBound = 3*grBFD + time.Second
)

// grCase is one router setup of TestPrivilegedGracefulRestart.
type grCase struct {
	flavor string
	bfd    bool
	// bfdEndsGR: the router ends Graceful Restart when BFD fails after the
	// sessions closed (BIRD), so a restart or a crash of directord costs a
	// route change, and a killed directord leaves within the BFD bound.
	bfdEndsGR bool
	// deadBound is how soon a dead director must leave the FIB.
	deadBound time.Duration
}

// TestPrivilegedGracefulRestart: three directors with Graceful Restart
// behind a router configured by router-config: FRR with BFD 300 ms x 3,
// BIRD without BFD and BIRD with it (docs/operations.md, "Restart, upgrade
// and Graceful Restart").
//   - directord on d1 stopped with SIGTERM and started again: the router's
//     route to the VIP does not change at all (ip monitor route sees
//     nothing) and the session is back within the restart time; BIRD with
//     BFD changes it, as documented;
//   - d3 drained: its next hop leaves at once (graceful_shutdown 1 s), not
//     after the restart time;
//   - directord on d1 killed (SIGKILL) and not restarted, while d2 freezes
//     (SIGSTOP: a dead host, whose TCP sessions do not close): d2 leaves
//     within the BFD bound (the hold time without BFD), d1 stays (its IPVS
//     would keep forwarding) until the restart time ends, then leaves; with
//     BIRD and BFD it leaves within the BFD bound too.
func TestPrivilegedGracefulRestart(t *testing.T) {
	hold := 3 * time.Second
	for _, tc := range []grCase{
		{flavor: "frr", bfd: true, deadBound: grDeadBound},
		{flavor: "bird", deadBound: hold + time.Second},
		{flavor: "bird", bfd: true, bfdEndsGR: true, deadBound: grDeadBound},
	} {
		name := tc.flavor
		if tc.bfd {
			name += "-bfd"
		}
		t.Run(name, func(t *testing.T) { testGracefulRestart(t, tc, hold) })
	}
}

func testGracefulRestart(t *testing.T, tc grCase, hold time.Duration) {
	c := dirConf{bfd: tc.bfd, bfdInterval: grBFD, hold: hold, holdDown: 200 * time.Millisecond, restartTime: grRestart}
	l := newLab(t, c, c, c)
	l.startRouter(tc.flavor)
	l.startDirectors()
	d1, d2, d3 := l.dirs[0], l.dirs[1], l.dirs[2]
	l.waitFIB(time.Now(), 30*time.Second, vip4, addrs4(d1, d2, d3)...)
	for _, d := range l.dirs {
		l.waitRouterBFD(d, time.Second)
	}

	changes := l.restart(d1)
	switch {
	case !tc.bfdEndsGR:
		for _, e := range changes {
			t.Errorf("the router's route changed during the restart (deleted %v): %s", e.Deleted, e.Text)
		}
	case len(changes) == 0:
		t.Errorf("no route change during the restart: %s ends Graceful Restart when BFD fails, as docs/operations.md says; if it no longer does, update the docs", tc.flavor)
	}

	drained := time.Now()
	drainDirector(t, d3)
	gone := l.waitFIB(drained, 10*time.Second, vip4, addrs4(d1, d2)...)
	t.Logf("measured: drained director left the FIB %s after the drain (graceful_shutdown 1s)", ms(gone))
	if gone >= grRestart-time.Second {
		t.Errorf("drained director left the FIB after %s: the drain must withdraw at once, not wait for the restart time %s", ms(gone), grRestart)
	}

	l.waitRouterBFD(d1, time.Second)
	l.waitRouterBFD(d2, time.Second)
	killed := time.Now()
	if err := d1.daemon.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	if err := d2.daemon.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = d2.daemon.Signal(syscall.SIGCONT) })
	if tc.bfdEndsGR {
		left := l.waitFIB(killed, 5*time.Second, vip4)
		t.Logf("measured: killed and frozen directors left the FIB %s after the signals (BFD %s x 3)", ms(left), grBFD)
		if left > tc.deadBound {
			t.Errorf("killed and frozen directors left the FIB after %s, want within the BFD bound (%s)", ms(left), tc.deadBound)
		}
		return
	}
	dead := l.waitFIB(killed, tc.deadBound+3*time.Second, vip4, addrs4(d1)...)
	t.Logf("measured: frozen (dead) director left the FIB %s after SIGSTOP (bound %s)", ms(dead), tc.deadBound)
	if dead > tc.deadBound {
		t.Errorf("a dead director left the FIB after %s, want within %s", ms(dead), tc.deadBound)
	}
	left := l.waitFIB(killed, grRestart+10*time.Second, vip4)
	t.Logf("measured: director whose directord was killed left the FIB %s after SIGKILL (restart_time %s)", ms(left), grRestart)
	if left < grRestart-time.Second {
		t.Errorf("killed director left the FIB after %s, want its route kept for the restart time %s", ms(left), grRestart)
	}
}

// restart stops d's directord with SIGTERM, starts it again, waits until
// the router has the session (and BFD) back with the same next hops, and
// returns the changes of the router's route to the VIP meanwhile.
func (l *aLab) restart(d *director) []nslab.RouteEvent {
	t := l.t
	t.Helper()
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
		if _, err := netlab.Wait(10*time.Second, 20*time.Millisecond, func() error { return l.routerSession(d, false) }); err != nil {
			return fmt.Errorf("the router did not see the session close: %w", err)
		}
		l.startDaemon(d)
		if _, err := netlab.Wait(2*grRestart, 20*time.Millisecond, func() error { return l.routerSession(d, true) }); err != nil {
			return fmt.Errorf("session after the restart: %w", err)
		}
		back = time.Since(stopped)
		l.waitRouterBFD(d, time.Second)
		_, err := netlab.Wait(10*time.Second, 20*time.Millisecond, func() error {
			if gws := l.gateways(vip4); fmt.Sprint(gws) != fmt.Sprint(want) {
				return fmt.Errorf("next hops after the restart %v, want %v", gws, want)
			}
			return nil
		})
		return err
	})
	t.Logf("measured: session back %s after SIGTERM (restart_time %s); route changes on the router meanwhile: %d", ms(back), grRestart, len(evs))
	if back > grRestart {
		t.Errorf("session back after %s, beyond the restart time %s", ms(back), grRestart)
	}
	return evs
}

// startRouter starts the router, FRR or BIRD, with router-config's output
// for the directors' files.
func (l *aLab) startRouter(flavor string) {
	l.t.Helper()
	if flavor == "frr" {
		l.startRouterBGP()
		return
	}
	var files []string
	for _, d := range l.dirs {
		files = append(files, d.routerFile)
	}
	l.routerConf = routerConfig(l.t, "bird", files)
	l.bird = l.rtr.StartBIRD(l.routerConf)
}

// routerSession returns nil when the router's session with d is
// established (up) or not (!up).
func (l *aLab) routerSession(d *director, up bool) error {
	state, err := l.routerSessionState(d)
	if err != nil {
		return err
	}
	if (state == "Established") != up {
		return fmt.Errorf("the router's session with %s is %s", d.name, state)
	}
	return nil
}

// routerSessionState is the router's BGP state for d's IPv4 session.
func (l *aLab) routerSessionState(d *director) (string, error) {
	if l.bird == nil {
		n, err := l.neighbor(dirAddr4(d.k))
		return n.State, err
	}
	block, err := l.birdProtocol(d)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(block, "\n") {
		if s, ok := strings.CutPrefix(strings.TrimSpace(line), "BGP state:"); ok {
			return strings.TrimSpace(s), nil
		}
	}
	return "", fmt.Errorf("no BGP state in BIRD's view of %s:\n%s", d.name, block)
}

// birdProtocol returns BIRD's `show protocols all` block of d's session.
func (l *aLab) birdProtocol(d *director) (string, error) {
	out, err := l.bird.Birdc("show", "protocols", "all")
	if err != nil {
		return "", fmt.Errorf("birdc: %w: %s", err, out)
	}
	for _, block := range strings.Split(out, "\n\n") {
		if strings.Contains(block, "Neighbor address: "+dirAddr4(d.k)+"\n") {
			return block, nil
		}
	}
	return "", fmt.Errorf("BIRD has no session with %s", dirAddr4(d.k))
}

// waitRouterBFD waits until the router has had BFD up with d for at least
// dur (at once when d runs no BFD).
func (l *aLab) waitRouterBFD(d *director, dur time.Duration) {
	l.t.Helper()
	if !d.conf.bfd {
		return
	}
	if l.bird == nil {
		l.waitBFDStable(dirAddr4(d.k), dur)
		return
	}
	var since time.Time
	netlab.MustWait(l.t, 20*time.Second, "BFD up on the router with "+d.name, func() error {
		out, err := l.bird.Birdc("show", "bfd", "sessions")
		if err != nil {
			return fmt.Errorf("birdc: %w: %s", err, out)
		}
		up := false
		for _, line := range strings.Split(out, "\n") {
			f := strings.Fields(line)
			up = up || len(f) > 2 && f[0] == dirAddr4(d.k) && f[2] == "Up"
		}
		if !up {
			since = time.Time{}
			return fmt.Errorf("bfd sessions:\n%s", out)
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) < dur {
			return fmt.Errorf("bfd up for %s only", time.Since(since))
		}
		return nil
	})
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
