package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/osrg/gobgp/v4/api"

	"github.com/anycast-director/director/config"
)

// Reconfigure applies a reloaded configuration. Peers are added, removed
// (with a Cease) or updated; unchanged sessions are not touched. A change of
// timers or BFD only is applied in place (timers take effect at the next
// session); any other change to a peer resets its session. A new ASN, router
// ID or listen setting restarts the whole server, which resets every session:
// the log says so. Before Start the configuration is only stored; after a
// failed restart, Reconfigure tries to start the server again.
func (s *Speaker) Reconfigure(ctx context.Context, cfg *config.BGP) error {
	if err := validate(cfg); err != nil {
		return fmt.Errorf("bgp reconfigure: %w", err)
	}
	defer s.emitPending()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	next := cloneBGP(cfg)
	if s.srv == nil {
		s.cfg = next
		if s.started {
			return s.startLocked(ctx)
		}
		return nil
	}
	if restart := globalChange(s.cfg, next); restart != "" {
		return s.restartLocked(ctx, next, restart)
	}
	if s.deferred {
		// No peer is in GoBGP yet: they connect with this configuration.
		s.cfg = next
		s.trackDeferredPeers()
		return nil
	}
	err := s.updatePeersLocked(ctx, next)
	// Peers were changed against the old config; record the new one even on
	// partial failure so the next reload diffs against what is live.
	s.cfg = next
	return err
}

// restartLocked replaces the server for a server-wide change (ASN, router
// ID, listen settings), which resets every session.
func (s *Speaker) restartLocked(ctx context.Context, next config.BGP, why string) error {
	s.logger.Warn("restarting bgp speaker: all sessions will be reset", "reason", why)
	if err := s.stopLocked(ctx, "restarting"); err != nil {
		s.logger.Warn("stopping the old bgp server", "err", err)
	}
	for _, p := range s.cfg.Peers {
		s.peers.remove(p.Address)
	}
	s.cfg = next
	if s.restartHook != nil {
		s.restartHook()
	}
	if err := s.startLocked(ctx); err != nil {
		s.logger.Error("bgp speaker restart failed: nothing is announced until a reload succeeds", "err", err)
		return err
	}
	return nil
}

// updatePeersLocked adds, updates and removes peers of the running server to
// match next; unchanged sessions are not touched.
func (s *Speaker) updatePeersLocked(ctx context.Context, next config.BGP) error {
	old := make(map[netip.Addr]config.Peer, len(s.cfg.Peers))
	for _, p := range s.cfg.Peers {
		old[p.Address] = p
	}
	var errs []error
	kept := make(map[netip.Addr]bool)
	for _, p := range next.Peers {
		o, ok := old[p.Address]
		kept[p.Address] = ok
		errs = append(errs, s.updatePeerLocked(ctx, o, ok, p))
	}
	for _, o := range s.cfg.Peers {
		if kept[o.Address] {
			continue
		}
		s.logger.Info("bgp peer removed", "peer", o.Address)
		if s.recycling[o.Address] {
			delete(s.recycling, o.Address)
			s.peers.remove(o.Address)
			continue
		}
		errs = append(errs, s.deletePeerLocked(ctx, o, true))
	}
	return errors.Join(errs...)
}

// updatePeerLocked brings one configured peer p in line: added when it is new
// (had is false), its timers updated in place, or its session reset when
// anything else changed from o.
func (s *Speaker) updatePeerLocked(ctx context.Context, o config.Peer, had bool, p config.Peer) error {
	switch {
	case had && s.recycling[p.Address]:
		// Out of GoBGP until its idle hold ends; it comes back with
		// this configuration.
		if comparePeer(o, p) != peerSame {
			s.logger.Info("bgp peer updated while it recovers from a failure", "peer", p.Address)
		}
	case !had:
		s.logger.Info("bgp peer added", "peer", p.Address, "asn", p.ASN)
		return s.addPeerLocked(ctx, p)
	case comparePeer(o, p) == peerTimers:
		up := s.peers.state(p.Address) == "established"
		if up && bfdRestarts(o, p) {
			s.logger.Warn("bgp peer bfd settings changed: the live BFD session restarts, and the router will reset the BGP session once (drain the director first to move no flow)", "peer", p.Address)
		} else {
			s.logger.Info("bgp peer timers updated; the session stays up", "peer", p.Address)
		}
		if _, err := s.srv.UpdatePeer(ctx, &api.UpdatePeerRequest{Peer: peerToAPI(p, up, s.cfg.GracefulRestart)}); err != nil {
			return fmt.Errorf("update peer %s: %w", p.Address, err)
		}
	case comparePeer(o, p) == peerSession:
		s.logger.Warn("bgp peer changed; resetting its session", "peer", p.Address)
		return errors.Join(s.deletePeerLocked(ctx, o, false), s.addPeerLocked(ctx, p))
	}
	return nil
}

// deletePeerLocked removes a neighbor; GoBGP sends it a Cease (peer
// de-configured). forget drops its status too (it leaves the configuration).
func (s *Speaker) deletePeerLocked(ctx context.Context, p config.Peer, forget bool) error {
	err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: p.Address.String()})
	if pe, ok := s.peers.transition(p.Address, "idle", time.Now(), ""); ok {
		s.pending = append(s.pending, pe)
	}
	if forget {
		s.peers.remove(p.Address)
	}
	if err != nil {
		return fmt.Errorf("delete peer %s: %w", p.Address, err)
	}
	return nil
}

// globalChange names the server-wide setting that differs, or "".
func globalChange(a, b config.BGP) string {
	switch {
	case a.ASN != b.ASN:
		return fmt.Sprintf("asn changed from %d to %d", a.ASN, b.ASN)
	case a.RouterID != b.RouterID:
		return fmt.Sprintf("router id changed from %s to %s", a.RouterID, b.RouterID)
	case a.ListenPort != b.ListenPort:
		return fmt.Sprintf("listen port changed from %d to %d", a.ListenPort, b.ListenPort)
	case !slices.Equal(a.ListenAddresses, b.ListenAddresses):
		return "listen addresses changed"
	case (a.GracefulRestart == nil) != (b.GracefulRestart == nil) ||
		a.GracefulRestart != nil && *a.GracefulRestart != *b.GracefulRestart:
		// The capability is part of every session's OPEN.
		return "graceful_restart changed"
	}
	return ""
}
