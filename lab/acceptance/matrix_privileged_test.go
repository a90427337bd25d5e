//go:build linux && privileged

package acceptance

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// TestPrivilegedPeeringMatrix proves every peering shape the configuration
// allows against both router flavors, with traffic. For FRR and for BIRD, one
// router runs exactly what `directord router-config` prints for sixteen real
// directord processes, two per shape, all on one LAN (matrixLab): eBGP one
// hop, iBGP, eBGP multihop (multihop_ttl 2), IPv6, GTSM, MD5, passive on the
// director's side and passive on the router's (listen_port 0). In every pair
// director a asks for BFD and director b does not, so each shape runs with
// and without it.
//
// For each shape it checks that the sessions are up (BFD up for a, except on
// the multihop session, where check-config says BFD is dropped and
// router-config leaves it out, and on the GTSM session with FRR, which runs
// multihop BFD there), that the VIP is in the router's FIB with one
// next hop per director, that requests from a client behind the router are
// answered by both directors, and that a's health failure withdraws a's next
// hop while b keeps answering. Both flavors run at once; the whole matrix
// takes well under a minute.
func TestPrivilegedPeeringMatrix(t *testing.T) {
	for _, flavor := range []string{"frr", "bird"} {
		t.Run(flavor, func(t *testing.T) {
			t.Parallel()
			m := newMatrixLab(t, flavor, matrixShapes(os.Getenv("MATRIX_SHAPES")))
			m.start()
			m.checkBFDLeftOut()
			m.waitAllRoutes(45 * time.Second)
			atStart := m.flaps()
			m.checkPeers()
			m.checkTraffic()
			m.checkHealthWithdraw()
			m.checkNoFlaps(atStart)
		})
	}
}

// shape is one way a director peers with the router.
type shape struct {
	name string
	// v6 peers over IPv6 and announces an IPv6 VIP.
	v6 bool
	// ibgp puts the director in the router's AS.
	ibgp bool
	// peer is extra YAML for the peer entry (indented under it).
	peer string
	// noListen sets bgp.listen_port 0: the director dials, the router waits.
	noListen bool
	// bfdDropped: the configuration asks for BFD on director a, but the
	// session is multihop, so config drops it with a warning.
	bfdDropped bool
	// bfdNotWithFRR: FRR runs multihop BFD on this one-hop session (GTSM),
	// so router-config leaves BFD out for FRR and director a's BFD stays
	// down; check-config warns.
	bfdNotWithFRR bool
}

// matrixShapes lists the shapes under test, one pair of directors each:
// all of them, or those named in only (comma-separated) to debug one.
func matrixShapes(only string) []shape {
	all := []shape{
		{name: "ebgp"},
		{name: "ibgp", ibgp: true},
		{name: "multihop", peer: "multihop_ttl: 2", bfdDropped: true},
		{name: "ipv6", v6: true},
		{name: "gtsm", peer: "ttl_security: 1", bfdNotWithFRR: true},
		{name: "md5", peer: `password: "matrix-md5-key"`},
		{name: "passive", peer: "passive: true"},
		{name: "router-passive", noListen: true},
	}
	if only == "" {
		return all
	}
	var out []shape
	for _, s := range all {
		if slices.Contains(strings.Split(only, ","), s.name) {
			out = append(out, s)
		}
	}
	return out
}

// checkBFDLeftOut: where BFD cannot work (a multihop session; a GTSM session
// with FRR), check-config says so and the router's configuration has no BFD
// for the director.
func (m *matrixLab) checkBFDLeftOut() {
	m.t.Helper()
	for _, d := range m.dirs {
		if !d.bfd {
			continue
		}
		var warning string
		switch {
		case d.shape.bfdDropped:
			warning = "bfd is not used on this session: it is multihop (2 hops)"
		case d.shape.bfdNotWithFRR:
			warning = "with an FRR router, bfd stays down on this ttl_security session"
		default:
			continue
		}
		if out := m.checkConfig(d); !strings.Contains(out, warning) {
			m.t.Errorf("check-config %s does not warn %q:\n%s", d.file, warning, out)
		}
		leftOut := d.shape.bfdDropped || m.flavor == "frr"
		if m.routerMentionsBFD(d.addr) == leftOut {
			m.t.Errorf("%s (%s): the router configuration has BFD for %s: %v, want %v:\n%s",
				d.name, d.shape.name, d.addr, !leftOut, leftOut, m.routerConf)
		}
	}
}

// checkPeers: every director's session is established, with BFD up where it
// works, off where the director has none, and down where only the router
// left it out.
func (m *matrixLab) checkPeers() {
	m.t.Helper()
	for _, d := range m.dirs {
		want := directorv1.BFDState_BFD_STATE_UP
		switch {
		case !d.bfd || d.shape.bfdDropped:
			want = directorv1.BFDState_BFD_STATE_OFF
		case d.shape.bfdNotWithFRR && m.flavor == "frr":
			want = directorv1.BFDState_BFD_STATE_DOWN
		}
		m.waitPeer(d, want, 30*time.Second)
	}
}

// checkTraffic: a client behind the router reaches every VIP, and both
// directors of each shape answer (ECMP hashes each connection's ports).
func (m *matrixLab) checkTraffic() {
	m.t.Helper()
	for _, s := range m.shapes {
		a, b := m.pair(s.name)
		m.waitNextHops(s, time.Now(), 5*time.Second, a, b)
		got := m.requests(s, 32)
		if got[a.name] == 0 || got[b.name] == 0 || got[a.name]+got[b.name] != 32 {
			m.t.Errorf("%s: 32 requests to %s were answered %v, want every one answered and both %s and %s among them",
				s.name, m.vip(s), got, a.name, b.name)
		}
	}
}

// checkHealthWithdraw: director a's service stops answering its health
// check; the router's route keeps only b's next hop, and every request then
// goes to b. Then a comes back.
func (m *matrixLab) checkHealthWithdraw() {
	m.t.Helper()
	for _, s := range m.shapes {
		a, _ := m.pair(s.name)
		m.setListener(a, false)
	}
	start := time.Now()
	for _, s := range m.shapes {
		_, b := m.pair(s.name)
		took := m.waitNextHops(s, start, 10*time.Second, b)
		m.t.Logf("%s %s: %s withdrawn from the router's FIB %s after director a's listener closed", m.flavor, s.name, m.vip(s), ms(took))
	}
	for _, s := range m.shapes {
		_, b := m.pair(s.name)
		if got := m.requests(s, 8); got[b.name] != 8 {
			m.t.Errorf("%s: with director a withdrawn, 8 requests were answered %v, want all by %s", s.name, got, b.name)
		}
	}
	for _, s := range m.shapes {
		a, _ := m.pair(s.name)
		m.setListener(a, true)
	}
	for _, s := range m.shapes {
		a, b := m.pair(s.name)
		m.waitNextHops(s, time.Now(), 15*time.Second, a, b)
	}
}

// flaps reads how often each director's sessions went down so far, by
// director and peer, and logs the sessions that did. While sessions come up,
// one can go down once in a connection collision: both sides dial, one side
// reaches Established on a connection the other, still in OpenConfirm,
// closes as the collision's loser (RFC 4271 6.8). That is BGP working (CI
// final6: "read-failed" on one IPv6 session in its first second).
func (m *matrixLab) flaps() map[string]int {
	m.t.Helper()
	out := map[string]int{}
	for _, d := range m.dirs {
		st, err := m.status(d)
		if err != nil {
			m.t.Fatal(err)
		}
		for _, p := range st.Peers {
			out[d.name+" "+p.Address] = int(p.Flaps)
			if p.Flaps != 0 {
				m.t.Logf("%s: %s (%s): the session with %s went down %d times while the sessions came up (last error %q)",
					m.flavor, d.name, d.shape.name, p.Address, p.Flaps, p.LastError)
			}
		}
	}
	return out
}

// checkNoFlaps: no session went down after every route was up (atStart,
// from flaps): not with traffic, nor when a health failure withdrew a VIP.
func (m *matrixLab) checkNoFlaps(atStart map[string]int) {
	m.t.Helper()
	for _, d := range m.dirs {
		st, err := m.status(d)
		if err != nil {
			m.t.Fatal(err)
		}
		for _, p := range st.Peers {
			if n := int(p.Flaps) - atStart[d.name+" "+p.Address]; n != 0 {
				m.t.Errorf("%s: %s (%s): the session with %s went down %d times after every route was up (last error %q)",
					m.flavor, d.name, d.shape.name, p.Address, n, p.LastError)
			}
		}
	}
}

// vip is a shape's VIP: one per shape, so each shape's route stands alone.
func (m *matrixLab) vip(s shape) string {
	for i, x := range m.shapes {
		if x.name == s.name {
			if s.v6 {
				return fmt.Sprintf("2001:db8:100::%d", i+1)
			}
			return fmt.Sprintf("198.18.1.%d", i+1)
		}
	}
	panic("unknown shape " + s.name)
}
