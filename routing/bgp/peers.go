package bgp

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/routing"
)

// minIdleHold is the shortest idle hold GoBGP can express (it counts whole
// seconds, and 0 means its 30 s default).
const minIdleHold = time.Second

// validate checks what the speaker needs from cfg; the config loader checks
// more, this guards against a hand-built configuration.
func validate(cfg *config.BGP) error {
	if cfg == nil {
		return errors.New("bgp configuration is missing: set bgp.asn, bgp.router_id and bgp.peers")
	}
	var errs []error
	if cfg.ASN == 0 {
		errs = append(errs, errors.New("bgp.asn is 0: set the director's AS number"))
	}
	if !cfg.RouterID.Is4() {
		errs = append(errs, fmt.Errorf("bgp.router_id %v is not an IPv4 address: BGP identifiers are 32-bit", cfg.RouterID))
	}
	seen := make(map[netip.Addr]bool)
	for i, p := range cfg.Peers {
		where := fmt.Sprintf("bgp.peers[%d]", i)
		if !p.Address.IsValid() {
			errs = append(errs, fmt.Errorf("%s.address is missing", where))
			continue
		}
		if seen[p.Address] {
			errs = append(errs, fmt.Errorf("%s.address %s is configured twice: keep one entry per neighbor", where, p.Address))
		}
		seen[p.Address] = true
		if p.ASN == 0 {
			errs = append(errs, fmt.Errorf("%s.asn is 0: set the neighbor's AS number", where))
		}
		if p.HoldTime != 0 && p.HoldTime < 3*time.Second {
			errs = append(errs, fmt.Errorf("%s.hold_time %s is below 3s (RFC 4271): use 0 or at least 3s", where, p.HoldTime))
		}
		if p.Keepalive != 0 && p.HoldTime != 0 && p.Keepalive >= p.HoldTime {
			errs = append(errs, fmt.Errorf("%s.keepalive %s must be shorter than hold_time %s", where, p.Keepalive, p.HoldTime))
		}
		if p.MultihopTTL != 0 && p.TTLSecurity != 0 {
			errs = append(errs, fmt.Errorf("%s: multihop_ttl and ttl_security exclude each other: GTSM sends with TTL 255", where))
		}
		if p.LocalAddress.IsValid() && p.LocalAddress.Is4() != p.Address.Is4() {
			errs = append(errs, fmt.Errorf("%s.local_address %s and address %s are of different families", where, p.LocalAddress, p.Address))
		}
		if b := p.BFD; b != nil && (b.MinInterval < time.Millisecond || b.Multiplier == 0) {
			errs = append(errs, fmt.Errorf("%s.bfd: min_interval %s must be at least 1ms and multiplier %d at least 1", where, b.MinInterval, b.Multiplier))
		}
	}
	return errors.Join(errs...)
}

// seconds converts d to whole seconds for GoBGP's timers, rounding up so a
// configured timer is never shortened.
func seconds(d time.Duration) uint64 {
	if d <= 0 {
		return 0
	}
	return uint64(math.Ceil(d.Seconds()))
}

// families returns the unicast families to enable for p. With neither flag
// set, the family of the session address is used.
func families(p config.Peer) []*api.Family {
	v4, v6 := p.IPv4, p.IPv6
	if !v4 && !v6 {
		v4, v6 = p.Address.Is4(), !p.Address.Is4()
	}
	var out []*api.Family
	if v4 {
		out = append(out, &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST})
	}
	if v6 {
		out = append(out, &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST})
	}
	return out
}

// peerToAPI translates one configured neighbor into GoBGP's peer message.
// BFD is included only with withBFD: the speaker turns it on once the session
// is established (see bfd.go). gr, when set, adds Graceful Restart
// (restart.go).
func peerToAPI(p config.Peer, withBFD bool, gr *config.GracefulRestart) *api.Peer {
	idle := max(p.IdleHoldAfterReset, minIdleHold)
	ap := &api.Peer{
		Conf: &api.PeerConf{
			NeighborAddress: p.Address.String(),
			PeerAsn:         p.ASN,
			AuthPassword:    p.Password,
		},
		Transport: &api.Transport{
			RemotePort:  uint32(p.Port),
			PassiveMode: p.Passive,
		},
		Timers: &api.Timers{Config: &api.TimersConfig{
			HoldTime:               seconds(p.HoldTime),
			KeepaliveInterval:      seconds(p.Keepalive),
			ConnectRetry:           seconds(p.ConnectRetry),
			IdleHoldTimeAfterReset: seconds(idle),
		}},
	}
	if p.LocalAddress.IsValid() {
		ap.Transport.LocalAddress = p.LocalAddress.String()
	}
	if p.MultihopTTL > 0 {
		ap.EbgpMultihop = &api.EbgpMultihop{Enabled: true, MultihopTtl: uint32(p.MultihopTTL)}
	}
	if p.TTLSecurity > 0 {
		// GTSM: the peer sends with TTL 255, so a neighbor n hops away arrives
		// with at least 256-n.
		ap.TtlSecurity = &api.TtlSecurity{Enabled: true, TtlMin: uint32(256 - int(p.TTLSecurity))}
	}
	if p.BFD != nil && withBFD {
		us := uint32(p.BFD.MinInterval.Microseconds())
		ap.Bfd = &api.BfdPeerConfig{
			Enabled:                  true,
			DesiredMinimumTxInterval: us,
			RequiredMinimumReceive:   us,
			DetectionMultiplier:      uint32(p.BFD.Multiplier),
		}
	}
	for _, f := range families(p) {
		af := &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true}}
		if gr != nil {
			af.MpGracefulRestart = &api.MpGracefulRestart{Config: &api.MpGracefulRestartConfig{Enabled: true}}
		}
		ap.AfiSafis = append(ap.AfiSafis, af)
	}
	ap.GracefulRestart = grToAPI(gr)
	return ap
}

// peerChange says how a reload changes one neighbor.
type peerChange int

const (
	peerSame    peerChange = iota // nothing to do
	peerTimers                    // timers or BFD only: updated in place (a live BFD session restarts: bfdRestarts)
	peerSession                   // anything that is part of the session: reset it
)

// comparePeer classifies the change from old to new (same address).
func comparePeer(old, new config.Peer) peerChange {
	if peerEqual(old, new) {
		return peerSame
	}
	o, n := old, new
	o.HoldTime, o.Keepalive, o.ConnectRetry, o.IdleHoldAfterReset, o.BFD = 0, 0, 0, 0, nil
	n.HoldTime, n.Keepalive, n.ConnectRetry, n.IdleHoldAfterReset, n.BFD = 0, 0, 0, 0, nil
	if peerEqual(o, n) {
		return peerTimers
	}
	return peerSession
}

// bfdRestarts reports whether updating a neighbor from old to new in place
// restarts its BFD session: GoBGP re-creates the session (new
// discriminator, starting Down) whenever BFD settings change, and a router
// whose BFD session was Up takes the BGP session down when it sees that
// (measured with FRR: Cease, subcode "BFD down", back with the new timers
// about 4 s later). Enabling BFD where it was off starts a session and
// restarts nothing.
func bfdRestarts(old, new config.Peer) bool {
	return old.BFD != nil && (new.BFD == nil || *old.BFD != *new.BFD)
}

// peerEqual compares two neighbors field by field (BFD by value).
func peerEqual(a, b config.Peer) bool {
	ab, bb := a.BFD, b.BFD
	a.BFD, b.BFD = nil, nil
	if a != b {
		return false
	}
	if (ab == nil) != (bb == nil) {
		return false
	}
	return ab == nil || *ab == *bb
}

// fsmState names a GoBGP session state the way routing.PeerStatus does.
func fsmState(s bgp.FSMState) string {
	switch s {
	case bgp.BGP_FSM_IDLE:
		return "idle"
	case bgp.BGP_FSM_CONNECT:
		return "connect"
	case bgp.BGP_FSM_ACTIVE:
		return "active"
	case bgp.BGP_FSM_OPENSENT:
		return "opensent"
	case bgp.BGP_FSM_OPENCONFIRM:
		return "openconfirm"
	case bgp.BGP_FSM_ESTABLISHED:
		return "established"
	}
	return "unknown"
}

// bfdState names a GoBGP BFD session state.
func bfdState(s api.BfdSessionState) string {
	switch s {
	case api.BfdSessionState_BFD_SESSION_STATE_UP:
		return "up"
	case api.BfdSessionState_BFD_SESSION_STATE_DOWN:
		return "down"
	case api.BfdSessionState_BFD_SESSION_STATE_INIT:
		return "init"
	case api.BfdSessionState_BFD_SESSION_STATE_ADMIN_DOWN:
		return "admin-down"
	}
	return "down"
}

// peerTable keeps the speaker's view of every session, fed by GoBGP's peer
// events. Its own lock lets Peers() read it while a long Set runs.
type peerTable struct {
	mu    sync.Mutex
	peers map[netip.Addr]*routing.PeerStatus
	// changed is closed and replaced on every update, so waiters can block
	// until something happens.
	changed chan struct{}
}

func newPeerTable() *peerTable {
	return &peerTable{peers: make(map[netip.Addr]*routing.PeerStatus), changed: make(chan struct{})}
}

// add starts tracking a neighbor in state idle; a neighbor tracked already
// (its session is being reset) keeps its history.
func (t *peerTable) add(p config.Peer, now time.Time) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st, ok := t.peers[p.Address]; ok {
		st.ASN = p.ASN
		return
	}
	t.peers[p.Address] = &routing.PeerStatus{Address: p.Address, ASN: p.ASN, State: "idle", Since: now}
	t.notifyLocked()
}

// remove stops tracking a neighbor.
func (t *peerTable) remove(addr netip.Addr) {
	t.mu.Lock()
	defer t.mu.Unlock()
	delete(t.peers, addr)
	t.notifyLocked()
}

// transition records a state change and returns the event to report; ok is
// false for unknown peers and for events that do not change the state.
func (t *peerTable) transition(addr netip.Addr, state string, at time.Time, reason string) (ev routing.PeerEvent, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st, found := t.peers[addr]
	if !found || st.State == state {
		return routing.PeerEvent{}, false
	}
	prev := st.State
	if prev == "established" {
		st.Flaps++
	}
	if reason != "" {
		st.LastError = reason
	}
	st.State, st.Since = state, at
	t.notifyLocked()
	return routing.PeerEvent{Peer: *st, Previous: prev}, true
}

// state returns the current state of a neighbor ("" when unknown).
func (t *peerTable) state(addr netip.Addr) string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if st, ok := t.peers[addr]; ok {
		return st.State
	}
	return ""
}

// snapshot returns copies of all statuses, sorted by address.
func (t *peerTable) snapshot() []routing.PeerStatus {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]routing.PeerStatus, 0, len(t.peers))
	for _, st := range t.peers {
		out = append(out, *st)
	}
	slices.SortFunc(out, func(a, b routing.PeerStatus) int { return a.Address.Compare(b.Address) })
	return out
}

// established returns the neighbors whose session is up, and a channel that
// is closed at the next change.
func (t *peerTable) established() ([]netip.Addr, <-chan struct{}) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var up []netip.Addr
	for a, st := range t.peers {
		if st.State == "established" {
			up = append(up, a)
		}
	}
	return up, t.changed
}

func (t *peerTable) notifyLocked() {
	close(t.changed)
	t.changed = make(chan struct{})
}

// Peers reports every configured session (routing.Advertiser), sorted by
// address, with BFD state and the number of prefixes sent to the peer.
func (s *Speaker) Peers() []routing.PeerStatus {
	out := s.peers.snapshot()
	s.mu.Lock()
	srv := s.srv
	bfd := make(map[netip.Addr]bool, len(s.cfg.Peers))
	for _, p := range s.cfg.Peers {
		bfd[p.Address] = p.BFD != nil
	}
	s.mu.Unlock()
	if srv == nil {
		return out
	}
	live := make(map[netip.Addr]*api.Peer)
	err := srv.ListPeer(context.Background(), &api.ListPeerRequest{EnableAdvertised: true}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
			live[a] = p
		}
	})
	if err != nil {
		s.logger.Debug("list peers failed", "err", err)
	}
	for i := range out {
		p := live[out[i].Address]
		if p == nil {
			continue
		}
		if bfd[out[i].Address] {
			out[i].BFDState = bfdState(p.GetState().GetBfdState().GetSessionState())
		}
		for _, af := range p.GetAfiSafis() {
			out[i].Advertised += int(af.GetState().GetAdvertised())
		}
	}
	return out
}

// onPeerEvent turns a GoBGP peer event into a status change, a log line and
// an OnPeerEvent call.
func (s *Speaker) onPeerEvent(gen int64, ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) {
	if ev.Type != apiutil.PEER_EVENT_STATE || gen != s.gen.Load() {
		return
	}
	addr := ev.Peer.State.NeighborAddress
	state := fsmState(ev.Peer.State.SessionState)
	// GoBGP attaches a reason to every transition; only a drop to idle
	// (a session that ended or failed) makes it an error worth keeping.
	reason := ""
	if state == "idle" && ev.Peer.State.DisconnectReason != api.PeerState_DISCONNECT_REASON_UNSPECIFIED {
		reason = ev.Peer.State.DisconnectMessage
	}
	pe, ok := s.peers.transition(addr, state, at, reason)
	if !ok {
		return
	}
	if state == "idle" && failure(ev.Peer.State.DisconnectReason) {
		go s.recycle(gen, addr)
	}
	if state == "established" {
		go s.enableBFD(gen, addr)
	}
	switch {
	case state == "established":
		s.logger.Info("bgp session established", "peer", addr, "asn", pe.Peer.ASN)
	case pe.Previous == "established":
		s.logger.Warn("bgp session down", "peer", addr, "state", state, "reason", reason)
	default:
		s.logger.Debug("bgp session state", "peer", addr, "state", state, "previous", pe.Previous, "reason", reason)
	}
	if s.opts.OnPeerEvent != nil {
		s.opts.OnPeerEvent(pe)
	}
}
