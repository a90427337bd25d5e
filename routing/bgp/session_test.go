package bgp

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/osrg/gobgp/v4/api"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/routing"
)

// TestSpeakerSessionOptions brings up one session per transport option and
// checks that a VIP reaches the router (or, for a wrong MD5 password, that
// the session never comes up).
func TestSpeakerSessionOptions(t *testing.T) {
	tests := []struct {
		name        string
		router      string
		local       string
		vip         string
		speaker     func(*config.BGP, *testRouter)
		routerPeer  func(*api.Peer)
		neverComeUp bool
	}{
		{
			name: "passive speaker: the router connects", router: "127.0.15.1", local: "127.0.15.2", vip: "198.18.5.1/32",
			speaker: func(c *config.BGP, r *testRouter) {
				c.ListenPort = freePort(t, netip.MustParseAddr("127.0.15.2"))
				c.ListenAddresses = []netip.Addr{netip.MustParseAddr("127.0.15.2")}
				c.Peers[0].Passive = true
			},
		},
		{
			name: "tcp md5 with matching passwords", router: "127.0.15.3", local: "127.0.15.4", vip: "198.18.5.2/32",
			speaker:    func(c *config.BGP, _ *testRouter) { c.Peers[0].Password = "s3cret-key" },
			routerPeer: func(p *api.Peer) { p.Conf.AuthPassword = "s3cret-key" },
		},
		{
			name: "tcp md5 with a wrong password never establishes", router: "127.0.15.5", local: "127.0.15.6", vip: "198.18.5.3/32",
			speaker:     func(c *config.BGP, _ *testRouter) { c.Peers[0].Password = "s3cret-key" },
			routerPeer:  func(p *api.Peer) { p.Conf.AuthPassword = "other-key" },
			neverComeUp: true,
		},
		{
			name: "ttl security (gtsm), one hop", router: "127.0.15.7", local: "127.0.15.8", vip: "198.18.5.4/32",
			speaker:    func(c *config.BGP, _ *testRouter) { c.Peers[0].TTLSecurity = 1 },
			routerPeer: func(p *api.Peer) { p.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: 255} },
		},
		{
			name: "ipv6 session carries an ipv6 VIP, next hop is the session address", router: "::1", local: "::1", vip: "2001:db8:100::10/128",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := newTestRouter(t, tc.router)
			cfg := speakerConfig(tc.local, r)
			if tc.speaker != nil {
				tc.speaker(cfg, r)
			}
			mods := []func(*api.Peer){}
			if cfg.Peers[0].Passive {
				mods = append(mods, func(p *api.Peer) {
					p.Transport.PassiveMode = false
					p.Transport.RemotePort = uint32(cfg.ListenPort)
				})
			}
			if tc.routerPeer != nil {
				mods = append(mods, tc.routerPeer)
			}
			r.addSpeaker(t, tc.local, mods...)
			s, _ := startSpeaker(t, cfg, []*testRouter{r}, tc.vip)
			vip := netip.MustParsePrefix(tc.vip)
			if err := s.Set(context.Background(), []routing.Advertisement{{Prefix: vip}}); err != nil {
				t.Fatalf("Set: %v", err)
			}
			if tc.neverComeUp {
				deadline := time.Now().Add(5 * time.Second)
				for time.Now().Before(deadline) {
					if st := s.Peers()[0].State; st == "established" || st == "openconfirm" {
						t.Fatalf("session reached %s with mismatched MD5 passwords", st)
					}
					time.Sleep(50 * time.Millisecond)
				}
				if r.everSeen(vip) {
					t.Fatalf("router received %s over a session with mismatched MD5 passwords", vip)
				}
				return
			}
			waitEstablished(t, s)
			waitRoutes(t, r, tc.local, map[netip.Prefix]received{
				vip: {NextHop: netip.MustParseAddr(tc.local), ASPath: []uint32{speakerASN}},
			})
			if err := s.Set(context.Background(), nil); err != nil {
				t.Fatalf("Set(nil): %v", err)
			}
			waitRoutes(t, r, tc.local, map[netip.Prefix]received{})
		})
	}
}

// TestSpeakerReconfigure: a reload adds and removes peers without touching
// the sessions that did not change; a timers-only change keeps the session;
// a new router ID restarts the server, resets every session and replays the
// advertisements.
func TestSpeakerReconfigure(t *testing.T) {
	const local = "127.0.14.2"
	ra, rb, rc := newTestRouter(t, "127.0.14.1"), newTestRouter(t, "127.0.14.3"), newTestRouter(t, "127.0.14.4")
	for _, r := range []*testRouter{ra, rb, rc} {
		r.addSpeaker(t, local)
	}
	all := []*testRouter{ra, rb, rc}
	s, _ := startSpeaker(t, speakerConfig(local, ra, rb), all, "198.18.4.10/32")
	vip := netip.MustParsePrefix("198.18.4.10/32")
	if err := s.Set(context.Background(), []routing.Advertisement{{Prefix: vip}}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	plain := map[netip.Prefix]received{vip: {NextHop: netip.MustParseAddr(local), ASPath: []uint32{speakerASN}}}
	waitRoutes(t, ra, local, plain)
	waitRoutes(t, rb, local, plain)
	before := statusOf(t, s, ra.addr)
	eventsA := len(ra.stateEvents())

	// Drop B, add C, leave A alone.
	if err := s.Reconfigure(context.Background(), speakerConfig(local, ra, rc)); err != nil {
		t.Fatalf("Reconfigure (swap B for C): %v", err)
	}
	waitRoutes(t, rc, local, plain)
	waitFor(t, 5*time.Second, "router B to lose the session", func() string {
		if st := rb.sessionState(local); st != "SESSION_STATE_IDLE" && st != "SESSION_STATE_ACTIVE" {
			return "router B session is " + st
		}
		return ""
	})
	waitRoutes(t, rb, local, map[netip.Prefix]received{})
	var addrs []netip.Addr
	for _, p := range s.Peers() {
		addrs = append(addrs, p.Address)
	}
	if d := cmp.Diff([]netip.Addr{ra.addr, rc.addr}, addrs, netipCmp()); d != "" {
		t.Errorf("Peers() after the reload (-want +got):\n%s", d)
	}

	// A timers-only change keeps the session.
	next := speakerConfig(local, ra, rc)
	next.Peers[0].HoldTime = 12 * time.Second
	if err := s.Reconfigure(context.Background(), next); err != nil {
		t.Fatalf("Reconfigure (timers): %v", err)
	}
	// An update sent afterwards arrives on the same session: had the
	// reload reset it, the router would have logged the session going down.
	withMED := map[netip.Prefix]received{vip: {NextHop: netip.MustParseAddr(local), ASPath: []uint32{speakerASN}, MED: ptr(uint32(5))}}
	if err := s.Set(context.Background(), []routing.Advertisement{{Prefix: vip, MED: ptr(uint32(5))}}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	waitRoutes(t, ra, local, withMED)
	if got := ra.stateEvents()[eventsA:]; len(got) != 0 {
		t.Errorf("router A saw session changes during reloads that did not change it: %+v", got)
	}
	after := statusOf(t, s, ra.addr)
	if after.State != "established" || after.Flaps != 0 || !after.Since.Equal(before.Since) {
		t.Errorf("peer A after reloads = %+v, want established since %s with no flaps", after, before.Since)
	}

	// A new router ID restarts the server: every session resets and the
	// advertisements come back.
	next.RouterID = netip.MustParseAddr("10.255.0.2")
	s.mu.Lock()
	s.restartHook = func() {
		// Let the routers finish tearing the old sessions down before the
		// new server starts: GoBGP's StartBgp writes package variables that
		// the routers read while they drop the old routes.
		waitFor(t, 5*time.Second, "routers to drop the old sessions", func() string {
			for _, r := range []*testRouter{ra, rc} {
				if st := r.sessionState(local); st == "SESSION_STATE_ESTABLISHED" {
					return fmt.Sprintf("router %s still established", r.addr)
				}
			}
			return ""
		})
	}
	s.mu.Unlock()
	if err := s.Reconfigure(context.Background(), next); err != nil {
		t.Fatalf("Reconfigure (router id): %v", err)
	}
	syncRouters(all)
	waitFor(t, 5*time.Second, "router A to see the restart", func() string {
		if len(ra.stateEvents()) == eventsA {
			return "no session change on router A"
		}
		return ""
	})
	waitEstablished(t, s)
	waitRoutes(t, ra, local, withMED)
	waitRoutes(t, rc, local, withMED)
}

// statusOf returns the speaker's status for one peer.
func statusOf(t *testing.T, s *Speaker, addr netip.Addr) routing.PeerStatus {
	t.Helper()
	for _, p := range s.Peers() {
		if p.Address == addr {
			return p
		}
	}
	t.Fatalf("no status for peer %s in %+v", addr, s.Peers())
	return routing.PeerStatus{}
}

// TestSpeakerLifecycleErrors: calls out of order fail with a clear error.
func TestSpeakerLifecycleErrors(t *testing.T) {
	cfg := &config.BGP{ASN: speakerASN, RouterID: netip.MustParseAddr("10.255.0.1")}
	s, err := New(cfg, nil, Options{})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	// Before Start the sets are only stored.
	if err := s.SetAllowed([]netip.Prefix{netip.MustParsePrefix("198.18.6.1/32")}); err != nil {
		t.Errorf("SetAllowed before Start: %v", err)
	}
	if err := s.Set(context.Background(), []routing.Advertisement{{Prefix: netip.MustParsePrefix("198.18.6.1/32")}}); err != nil {
		t.Errorf("Set before Start: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Errorf("second Start: want an error")
	}
	if len(s.sent) != 1 {
		t.Errorf("Start handed %d routes to GoBGP, want the 1 stored before it", len(s.sent))
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Errorf("second Stop: %v, want nil", err)
	}
	if err := s.Start(context.Background()); err == nil {
		t.Errorf("Start after Stop: want an error")
	}
	if err := s.Reconfigure(context.Background(), cfg); err == nil {
		t.Errorf("Reconfigure after Stop: want an error")
	}
}

// TestSpeakerRecoversFromFailureQuickly: after the router resets the
// session, the speaker is back within its IdleHoldAfterReset (1 s) plus one
// connection attempt. GoBGP alone would sit idle for a fixed 5 s first, and
// with BFD could carry a stale reset into the next session (recycle.go).
func TestSpeakerRecoversFromFailureQuickly(t *testing.T) {
	const local = "127.0.16.2"
	r := newTestRouter(t, "127.0.16.1")
	r.addSpeaker(t, local)
	s, log := startSpeaker(t, speakerConfig(local, r), []*testRouter{r}, "198.18.7.1/32")
	waitEstablished(t, s)

	start := time.Now()
	if err := r.srv.ResetPeer(context.Background(), &api.ResetPeerRequest{Address: local, Communication: "test reset"}); err != nil {
		t.Fatalf("router: reset the session: %v", err)
	}
	waitFor(t, 5*time.Second, "the speaker to see the reset", func() string {
		if st := statusOf(t, s, r.addr); st.Flaps != 1 {
			return fmt.Sprintf("peer %+v", st)
		}
		return ""
	})
	waitEstablished(t, s)
	if took := time.Since(start); took >= 5*time.Second {
		t.Errorf("session back after %s, want under GoBGP's own 5 s idle hold", took)
	}
	st := statusOf(t, s, r.addr)
	if !strings.Contains(st.LastError, "administrative reset") {
		t.Errorf("LastError = %q, want the router's administrative reset", st.LastError)
	}
	var downs int
	for _, ev := range log.all() {
		if ev.Previous == "established" {
			downs++
		}
	}
	if downs != 1 {
		t.Errorf("speaker reported %d session drops, want 1", downs)
	}
}

// TestSpeakerFailedRestart: a reload whose restart fails leaves the speaker
// down with a clear error from Set, and the next good reload brings it back
// with the stored set.
func TestSpeakerFailedRestart(t *testing.T) {
	addr := netip.MustParseAddr("127.0.17.2")
	busy, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	cfg := &config.BGP{ASN: speakerASN, RouterID: netip.MustParseAddr("10.255.0.1")}
	s, _ := startSpeaker(t, cfg, nil, "198.18.8.1/32")
	vip := []routing.Advertisement{{Prefix: netip.MustParsePrefix("198.18.8.1/32")}}
	if err := s.Set(context.Background(), vip); err != nil {
		t.Fatalf("Set: %v", err)
	}

	bad := *cfg
	bad.ListenPort = uint16(busy.Addr().(*net.TCPAddr).Port)
	bad.ListenAddresses = []netip.Addr{addr}
	if err := s.Reconfigure(context.Background(), &bad); err == nil {
		t.Fatalf("Reconfigure onto a port in use: want an error")
	}
	if err := s.Set(context.Background(), vip); !errors.Is(err, errDown) {
		t.Errorf("Set while down: err = %v, want errDown", err)
	}
	if err := s.Reconfigure(context.Background(), cfg); err != nil {
		t.Fatalf("Reconfigure back to a good config: %v", err)
	}
	s.mu.Lock()
	n := len(s.sent)
	s.mu.Unlock()
	if n != 1 {
		t.Errorf("after recovery GoBGP holds %d routes, want the 1 kept while down", n)
	}
	if err := s.Set(context.Background(), vip); err != nil {
		t.Errorf("Set after recovery: %v", err)
	}
}

// TestSpeakerEnablesBFDOnceEstablished: a peer with BFD configured is added
// without it and gets it once the session is up, without a session reset
// (bfd.go explains why).
func TestSpeakerEnablesBFDOnceEstablished(t *testing.T) {
	const local = "127.0.18.2"
	r := newTestRouter(t, "127.0.18.1")
	r.addSpeaker(t, local)
	cfg := speakerConfig(local, r)
	cfg.Peers[0].BFD = &config.BFD{MinInterval: 300 * time.Millisecond, Multiplier: 3}
	s, log := startSpeaker(t, cfg, []*testRouter{r})
	bfdEnabled := func() bool {
		on := false
		_ = s.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(p *api.Peer) { on = p.GetBfd().GetEnabled() })
		return on
	}
	if bfdEnabled() {
		t.Errorf("BFD is on before the session is established")
	}
	waitEstablished(t, s)
	waitFor(t, 5*time.Second, "BFD to be enabled", func() string {
		if !bfdEnabled() {
			return "BFD still off"
		}
		return ""
	})
	time.Sleep(time.Second) // a reset caused by the change would show by now
	for _, ev := range log.all() {
		if ev.Previous == "established" {
			t.Errorf("session went down when BFD was enabled: %+v", ev)
		}
	}
	if st := statusOf(t, s, r.addr); st.BFDState == "" {
		t.Errorf("Peers() BFDState is empty for a peer with BFD configured")
	}
}

// TestSpeakerGracefulRestartConnectsWithRoutes: a speaker started with
// graceful_restart does not connect while it has nothing to announce (an
// End-of-RIB then would make helpers drop the routes they kept), and
// connects with its first non-empty set.
func TestSpeakerGracefulRestartConnectsWithRoutes(t *testing.T) {
	const local = "127.0.19.2"
	r := newTestRouter(t, "127.0.19.1")
	r.addSpeaker(t, local)
	cfg := speakerConfig(local, r)
	cfg.GracefulRestart = &config.GracefulRestart{RestartTime: 20 * time.Second}
	s, _ := startSpeaker(t, cfg, []*testRouter{r}, "198.18.7.1/32")
	// GoBGP's first connection attempt comes 1.5 to 2 s after a peer is
	// added: 3 s without a session show the speaker held back.
	held := time.Now().Add(3 * time.Second)
	for time.Now().Before(held) {
		if st := r.sessionState(local); st == "ESTABLISHED" {
			t.Fatalf("the session came up before the speaker had anything to announce")
		}
		if st := statusOf(t, s, r.addr); st.State != "idle" {
			t.Fatalf("held-back peer reported %+v, want idle", st)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := s.Set(context.Background(), []routing.Advertisement{{Prefix: netip.MustParsePrefix("198.18.7.1/32")}}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	waitEstablished(t, s)
	waitFor(t, 10*time.Second, "the route at the router", func() string {
		got, err := r.routes(local)
		if err != nil {
			return err.Error()
		}
		if _, ok := got[netip.MustParsePrefix("198.18.7.1/32")]; !ok {
			return fmt.Sprintf("router has %v", got)
		}
		return ""
	})
}
