package bgp

import (
	"context"
	"net/netip"
	"time"

	"github.com/osrg/gobgp/v4/api"

	"github.com/anycast-director/director/config"
)

// Why failed peers are re-created: with GoBGP v4.8, a peer whose session
// failed stays idle for a fixed 5 s, and when its BFD session expires (or
// sees the remote side down) after the BGP session is already gone, the
// administrative reset BFD requests is queued and sent, ending the session
// again, the moment the next session is established. A frozen and resumed
// director hit that extra flap in about half of the runs: on resume the
// router's Cease and the BFD expiry arrive together.
//
// So on a session failure the speaker deletes the GoBGP peer at once, which
// drops the FSM with any queued reset and stops its BFD session (a reset
// still in flight then finds no peer and fails harmlessly), and adds it back
// IdleHoldAfterReset later (at least 1 s, so a broken peer cannot reconnect
// in a tight loop). The fresh peer connects at once and starts a fresh BFD
// session.

// failure reports whether a transition to idle is a session failure (as
// opposed to the speaker itself disabling or removing the peer).
func failure(r api.PeerState_DisconnectReason) bool {
	switch r {
	case api.PeerState_DISCONNECT_REASON_UNSPECIFIED,
		api.PeerState_DISCONNECT_REASON_ADMIN_DOWN,
		api.PeerState_DISCONNECT_REASON_DECONFIGURED:
		return false
	}
	return true
}

// recycle removes a failed peer from GoBGP and schedules its return. It runs
// on its own goroutine: the event goroutine must never wait for mu (Stop
// holds mu while it waits for events).
func (s *Speaker) recycle(gen int64, addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil || s.stopped || s.gen.Load() != gen || s.recycling[addr] {
		return
	}
	p, ok := s.peerConfig(addr)
	if !ok {
		return
	}
	if st := s.peers.state(addr); st == "opensent" || st == "openconfirm" || st == "established" {
		return // already on its way back
	}
	if err := s.srv.DeletePeer(context.Background(), &api.DeletePeerRequest{Address: addr.String()}); err != nil {
		s.logger.Warn("re-creating failed bgp peer: delete", "peer", addr, "err", err)
		return
	}
	s.recycling[addr] = true
	hold := max(p.IdleHoldAfterReset, minIdleHold)
	s.logger.Debug("failed bgp peer removed, re-adding it after the idle hold", "peer", addr, "hold", hold)
	time.AfterFunc(hold, func() { s.readd(gen, addr) })
}

// readd adds a recycled peer back with its current configuration, unless the
// speaker stopped, restarted or the peer was removed meanwhile.
func (s *Speaker) readd(gen int64, addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil || s.stopped || s.gen.Load() != gen || !s.recycling[addr] {
		return
	}
	delete(s.recycling, addr)
	p, ok := s.peerConfig(addr)
	if !ok {
		return
	}
	if err := s.srv.AddPeer(context.Background(), &api.AddPeerRequest{Peer: peerToAPI(p, false, s.cfg.GracefulRestart)}); err != nil {
		s.logger.Error("re-adding failed bgp peer; it stays down until the next reload", "peer", addr, "err", err)
	}
}

// peerConfig returns the configured peer with address addr. Needs mu.
func (s *Speaker) peerConfig(addr netip.Addr) (config.Peer, bool) {
	for _, p := range s.cfg.Peers {
		if p.Address == addr {
			return p, true
		}
	}
	return config.Peer{}, false
}
