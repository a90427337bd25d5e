package bgp

import (
	"context"
	"net/netip"

	"github.com/osrg/gobgp/v4/api"
)

// Why BFD starts only once the BGP session is up: FRR 8.4 creates its BFD
// session for a neighbor with an unknown source address and replaces it
// with a new one (new discriminator) when the TCP session comes up. A GoBGP
// v4.8 BFD peer that already bound the first session's discriminator then
// rejects the new session's packets until its own detection timer expires,
// which resets the BGP session: one flap at start-up, seen in about one run
// in fifteen even with static neighbors and update-source. Enabling GoBGP's
// BFD for the peer once BGP is established (UpdatePeer changes BFD without
// touching the session) means it only ever meets the final FRR session.
// A failed peer is re-created without BFD (recycle.go) and gets it back the
// same way.

// enableBFD turns BFD on for an established peer that has it configured.
// Like recycle it runs on its own goroutine.
func (s *Speaker) enableBFD(gen int64, addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv == nil || s.stopped || s.gen.Load() != gen || s.recycling[addr] {
		return
	}
	p, ok := s.peerConfig(addr)
	if !ok || p.BFD == nil || s.peers.state(addr) != "established" {
		return
	}
	if _, err := s.srv.UpdatePeer(context.Background(), &api.UpdatePeerRequest{Peer: peerToAPI(p, true, s.cfg.GracefulRestart)}); err != nil {
		s.logger.Warn("enabling bfd failed; the session runs on the hold timer alone", "peer", addr, "err", err)
		return
	}
	s.logger.Debug("bfd enabled", "peer", addr, "min_interval", p.BFD.MinInterval, "multiplier", p.BFD.Multiplier)
}
