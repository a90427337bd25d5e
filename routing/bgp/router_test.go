package bgp

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/routing"
)

// This file is the test harness: a second, in-process GoBGP plays the
// upstream router on a loopback address and a free port, and records what it
// receives.

const (
	speakerASN = 65100
	routerASN  = 65000
)

// testRouter is an in-process GoBGP acting as the upstream router.
type testRouter struct {
	srv  *server.BgpServer
	addr netip.Addr
	port uint16

	mu     sync.Mutex
	events []apiutil.PeerState // session state changes, in order
	seen   map[netip.Prefix]bool
}

// newTestRouter starts a router listening on addr and a free port.
func newTestRouter(t *testing.T, addr string) *testRouter {
	t.Helper()
	r := &testRouter{addr: netip.MustParseAddr(addr), seen: make(map[netip.Prefix]bool)}
	r.port = freePort(t, r.addr)
	r.srv = server.NewBgpServer(server.LoggerOption(testLogger(t, "router "+addr), nil))
	go r.srv.Serve()
	t.Cleanup(r.srv.Stop)
	rid := "10.254.0.1"
	if r.addr.Is4() {
		rid = "10.254." + strconv.Itoa(int(r.addr.As4()[2])) + "." + strconv.Itoa(int(r.addr.As4()[3]))
	}
	err := r.srv.StartBgp(context.Background(), &api.StartBgpRequest{Global: &api.Global{
		Asn: routerASN, RouterId: rid, ListenPort: int32(r.port), ListenAddresses: []string{addr},
	}})
	if err != nil {
		t.Fatalf("start router %s: %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	err = r.srv.WatchEvent(ctx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, _ time.Time) {
			if ev.Type == apiutil.PEER_EVENT_STATE {
				r.mu.Lock()
				r.events = append(r.events, ev.Peer.State)
				r.mu.Unlock()
			}
		},
		OnPathUpdate: func(paths []*apiutil.Path, _ time.Time) {
			r.mu.Lock()
			defer r.mu.Unlock()
			for _, p := range paths {
				if pfx, err := netip.ParsePrefix(p.Nlri.String()); err == nil && !p.Withdrawal {
					r.seen[pfx] = true
				}
			}
		},
	}, server.WatchPeer(), server.WatchUpdate(false, "", ""))
	if err != nil {
		t.Fatalf("watch router %s: %v", addr, err)
	}
	return r
}

// addSpeaker configures a neighbor for the speaker at addr. The router waits
// for the speaker to connect unless a modifier says otherwise.
func (r *testRouter) addSpeaker(t *testing.T, addr string, mods ...func(*api.Peer)) {
	t.Helper()
	p := &api.Peer{
		Conf:      &api.PeerConf{NeighborAddress: addr, PeerAsn: speakerASN},
		Transport: &api.Transport{PassiveMode: true, LocalAddress: r.addr.String()},
		Timers:    &api.Timers{Config: &api.TimersConfig{HoldTime: 9, KeepaliveInterval: 3, ConnectRetry: 1, IdleHoldTimeAfterReset: 1}},
		AfiSafis: []*api.AfiSafi{
			{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}, Enabled: true}},
			{Config: &api.AfiSafiConfig{Family: &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}, Enabled: true}},
		},
	}
	for _, m := range mods {
		m(p)
	}
	if err := r.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: p}); err != nil {
		t.Fatalf("router %s: add speaker %s: %v", r.addr, addr, err)
	}
}

// received is a route as the router received it.
type received struct {
	NextHop     netip.Addr
	ASPath      []uint32
	MED         *uint32
	Communities []uint32
	Large       [][3]uint32
}

// routes returns the router's Adj-RIB-In from the speaker at from.
func (r *testRouter) routes(from string) (map[netip.Prefix]received, error) {
	out := make(map[netip.Prefix]received)
	for _, fam := range []bgp.Family{bgp.RF_IPv4_UC, bgp.RF_IPv6_UC} {
		err := r.srv.ListPath(apiutil.ListPathRequest{TableType: api.TableType_TABLE_TYPE_ADJ_IN, Name: from, Family: fam},
			func(prefix bgp.NLRI, paths []*apiutil.Path) {
				for _, p := range paths {
					pfx, err := netip.ParsePrefix(prefix.String())
					if err != nil || p.Withdrawal {
						continue
					}
					out[pfx] = decodeAttrs(p.Attrs)
				}
			})
		if err != nil {
			return nil, fmt.Errorf("list adj-in of %s: %w", from, err)
		}
	}
	return out, nil
}

// decodeAttrs extracts the attributes the tests assert on.
func decodeAttrs(attrs []bgp.PathAttributeInterface) received {
	var g received
	for _, a := range attrs {
		switch a := a.(type) {
		case *bgp.PathAttributeNextHop:
			g.NextHop = a.Value
		case *bgp.PathAttributeMpReachNLRI:
			g.NextHop = a.Nexthop
		case *bgp.PathAttributeAsPath:
			for _, seg := range a.Value {
				g.ASPath = append(g.ASPath, seg.GetAS()...)
			}
		case *bgp.PathAttributeMultiExitDisc:
			med := a.Value
			g.MED = &med
		case *bgp.PathAttributeCommunities:
			g.Communities = a.Value
		case *bgp.PathAttributeLargeCommunities:
			for _, l := range a.Values {
				g.Large = append(g.Large, [3]uint32{l.ASN, l.LocalData1, l.LocalData2})
			}
		}
	}
	return g
}

// everSeen reports whether the router ever received prefix p.
func (r *testRouter) everSeen(p netip.Prefix) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.seen[p]
}

// stateEvents returns the session state changes recorded so far.
func (r *testRouter) stateEvents() []apiutil.PeerState {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]apiutil.PeerState(nil), r.events...)
}

// sessionState returns the router's view of its session with addr.
func (r *testRouter) sessionState(addr string) string {
	state := "absent"
	_ = r.srv.ListPeer(context.Background(), &api.ListPeerRequest{Address: addr}, func(p *api.Peer) {
		state = p.GetState().GetSessionState().String()
	})
	return state
}

// peerFor returns a speaker-side neighbor entry for the router.
func (r *testRouter) peerFor(local string) config.Peer {
	return config.Peer{
		Address:            r.addr,
		ASN:                routerASN,
		Port:               r.port,
		LocalAddress:       netip.MustParseAddr(local),
		HoldTime:           9 * time.Second,
		ConnectRetry:       time.Second,
		IdleHoldAfterReset: time.Second,
		IPv4:               r.addr.Is4(),
		IPv6:               r.addr.Is6(),
	}
}

// speakerConfig is a speaker configuration peering with the given routers.
func speakerConfig(local string, routers ...*testRouter) *config.BGP {
	cfg := &config.BGP{ASN: speakerASN, RouterID: netip.MustParseAddr("10.255.0.1")}
	for _, r := range routers {
		cfg.Peers = append(cfg.Peers, r.peerFor(local))
	}
	return cfg
}

// eventLog collects a speaker's peer events.
type eventLog struct {
	mu     sync.Mutex
	events []routing.PeerEvent
}

func (l *eventLog) add(ev routing.PeerEvent) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, ev)
}

func (l *eventLog) all() []routing.PeerEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]routing.PeerEvent(nil), l.events...)
}

// startSpeaker creates and starts a speaker and stops it at the end of the
// test. GoBGP's StartBgp writes package variables that every server reads
// while it computes best paths; syncRouters orders that write before the
// routers' later reads for the race detector.
func startSpeaker(t *testing.T, cfg *config.BGP, routers []*testRouter, allowed ...string) (*Speaker, *eventLog) {
	t.Helper()
	log := &eventLog{}
	s, err := New(cfg, testLogger(t, "speaker"), Options{OnPeerEvent: log.add})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	var ps []netip.Prefix
	for _, a := range allowed {
		ps = append(ps, netip.MustParsePrefix(a))
	}
	if err := s.SetAllowed(ps); err != nil {
		t.Fatalf("SetAllowed: %v", err)
	}
	if err := s.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	syncRouters(routers)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := s.Stop(ctx); err != nil {
			t.Errorf("Stop: %v", err)
		}
	})
	return s, log
}

// syncRouters runs one management operation on every router. Each router
// serializes its operations with the lock its session goroutines take, so
// everything the calling goroutine did before happens-before the routers'
// later route processing. The speaker's first connection comes 1.5 s later.
func syncRouters(routers []*testRouter) {
	for _, r := range routers {
		_ = r.srv.ListPeer(context.Background(), &api.ListPeerRequest{}, func(*api.Peer) {})
	}
}

// waitFor polls cond until it returns "" or the timeout passes, then fails
// the test with the last message.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		msg := cond()
		if msg == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s: %s", timeout, what, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// waitEstablished waits until the speaker reports every peer established.
func waitEstablished(t *testing.T, s *Speaker) {
	t.Helper()
	waitFor(t, 15*time.Second, "sessions established", func() string {
		for _, p := range s.Peers() {
			if p.State != "established" {
				return fmt.Sprintf("%s is %s (last error %q)", p.Address, p.State, p.LastError)
			}
		}
		return ""
	})
}

// freePort returns a TCP port that is free on addr right now.
func freePort(t *testing.T, addr netip.Addr) uint16 {
	t.Helper()
	l, err := net.Listen("tcp", netip.AddrPortFrom(addr, 0).String())
	if err != nil {
		t.Fatalf("find a free port on %s: %v", addr, err)
	}
	defer l.Close()
	return uint16(l.Addr().(*net.TCPAddr).Port)
}

// testLogger sends logs to t.Log at Debug when -v is set, else only warnings.
func testLogger(t *testing.T, who string) *slog.Logger {
	level := slog.LevelWarn
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level})).With("who", who)
}

// tWriter adapts t.Log to an io.Writer. Writes after the test ended are
// dropped (GoBGP goroutines may log while shutting down).
type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	defer func() { _ = recover() }()
	w.t.Log(string(p))
	return len(p), nil
}
