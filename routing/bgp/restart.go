package bgp

import (
	"context"
	"time"

	"github.com/osrg/gobgp/v4/api"

	"github.com/anycast-director/director/config"
)

// Graceful Restart (RFC 4724), the director's side. With
// bgp.graceful_restart set, every session carries the capability with the
// Restart State and Forwarding State bits set: a director that restarts
// keeps forwarding (IPVS lives in the kernel, not in directord), so routers
// in helper mode keep its routes while it is away, up to RestartTime, and
// until its End-of-RIB after it is back. GoBGP ties both bits to its
// "restarting" state, in which it also waits for every router's End-of-RIB
// before it sends its own table: harmless for a speaker that imports nothing.
//
// A restart must neither say goodbye nor come back empty-handed:
//   - Release ends the speaker without a NOTIFICATION; the sessions close
//     with the process (TCP FIN), which is what routers treat as a restart.
//     Stop still sends a Cease, which ends the routers' Graceful Restart: it
//     is for a director that leaves.
//   - A freshly started speaker connects only once it has something to
//     announce (the first non-empty Set, that is once health checks found a
//     VIP servable), or after half the restart time at the latest, so its
//     End-of-RIB never tells the routers to drop routes it is about to
//     announce again.

// grToAPI is GoBGP's Graceful Restart setting of a peer; nil when off.
func grToAPI(gr *config.GracefulRestart) *api.GracefulRestart {
	if gr == nil {
		return nil
	}
	t := uint32(seconds(gr.RestartTime))
	return &api.GracefulRestart{
		Enabled:     true,
		RestartTime: t,
		// How long GoBGP waits for the routers' End-of-RIB before it sends
		// its own table anyway (a router that is down never sends one).
		DeferralTime:    max(1, t/4),
		LocalRestarting: true,
	}
}

// deferConnect holds the peers back after the first start of a speaker with
// Graceful Restart until the first non-empty Set or half the restart time,
// and reports whether it did. The peers are listed as idle meanwhile.
func (s *Speaker) deferConnect(gen int64) bool {
	gr := s.cfg.GracefulRestart
	if gr == nil || s.started || len(s.sent) > 0 || len(s.cfg.Peers) == 0 {
		return false
	}
	s.deferred = true
	s.trackDeferredPeers()
	wait := gr.RestartTime / 2
	time.AfterFunc(wait, func() { s.connectDeferred(gen, "nothing to announce "+wait.String()+" after start") })
	return true
}

// trackDeferredPeers lists the configured peers, and only them, as idle.
func (s *Speaker) trackDeferredPeers() {
	now := time.Now()
	want := make(map[string]bool, len(s.cfg.Peers))
	for _, p := range s.cfg.Peers {
		want[p.Address.String()] = true
		s.peers.add(p, now)
	}
	for _, st := range s.peers.snapshot() {
		if !want[st.Address.String()] {
			s.peers.remove(st.Address)
		}
	}
}

// connectDeferred adds the held-back peers, once.
func (s *Speaker) connectDeferred(gen int64, why string) {
	defer s.emitPending()
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.deferred || s.srv == nil || s.stopped || s.gen.Load() != gen {
		return
	}
	s.connectLocked(why)
}

// connectLocked ends the hold: the peers are added and connect.
func (s *Speaker) connectLocked(why string) error {
	s.deferred = false
	s.logger.Info("bgp speaker connecting to its peers", "reason", why, "announced", len(s.sent))
	return s.addPeersLocked(context.Background())
}

// Release ends the speaker for a restart of the process: unlike Stop it
// sends no Cease and leaves the sessions to close with the process, so
// routers in Graceful Restart helper mode keep the director's routes for
// the restart time. Calls after Release return ErrStopped. Without
// bgp.graceful_restart, Release is Stop.
func (s *Speaker) Release(ctx context.Context) error {
	s.mu.Lock()
	gr := s.cfg.GracefulRestart
	s.mu.Unlock()
	if gr == nil {
		return s.Stop(ctx)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	s.logger.Info("bgp speaker released for a restart: the sessions close with the process, without a NOTIFICATION",
		"announced", len(s.sent), "restart_time", gr.RestartTime)
	return nil
}
