// Package bgp announces VIPs to upstream routers with an embedded GoBGP v4
// speaker; it is the only package that imports GoBGP.
//
// The speaker takes the whole desired set of advertisements (Set) and diffs it
// against what it last handed to GoBGP, so a missed event can never leave a
// stale route behind. Two policies guard every session: the import policy
// rejects every route a peer sends (a director never routes by BGP) and the
// export policy accepts only the prefixes given to SetAllowed, the configured
// VIPs, so nothing else reaches a router even if it gets into the RIB.
//
// Graceful shutdown (RFC 8326) is driven by the caller with the same calls:
// Set with GracefulShutdown (and a worse MED), wait, Set(nil) to withdraw,
// then Stop, which ends every session with a Cease (administrative shutdown).
//
// GoBGP v4.8 facts the speaker works around: timers are whole seconds and
// the first connection attempt of an active peer waits 1.5 to 2 s. After a
// session failure GoBGP stays idle for a fixed 5 s, and a BFD reset that
// fires while the session is already down is queued and ends the next
// session the moment it is established; so a failed peer is removed at once
// and added back IdleHoldAfterReset later (recycle.go). Its BFD binds to the
// first BFD session it hears, while FRR replaces its BFD session when the
// TCP session comes up; so BFD is switched on only once BGP is established
// (bfd.go), and fast failure detection starts a second or two after that.
package bgp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/server"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/routing"
)

// shutdownCommunication is sent in the Cease NOTIFICATION (RFC 9003) so the
// router's log says why the session ended.
const shutdownCommunication = "anycast director shutting down"

// ceaseWait bounds how long Stop waits for the Cease to be sent before it
// tears the server down anyway.
const ceaseWait = 3 * time.Second

// ErrStopped is returned by calls made after Stop.
var ErrStopped = errors.New("bgp speaker is stopped")

// Options are the hooks of a Speaker.
type Options struct {
	// OnPeerEvent is called for every session state change, in order per
	// peer: from the speaker's event goroutine, and for the final "idle" of
	// sessions ended by Stop or Reconfigure from the goroutine calling them.
	// It must not block: hand the event to a channel or update a snapshot.
	OnPeerEvent func(routing.PeerEvent)
}

// Speaker is the embedded BGP speaker. It implements routing.Advertiser. All
// methods are safe for concurrent use; Set, SetAllowed, Reconfigure and Stop
// are serialized.
type Speaker struct {
	logger *slog.Logger
	opts   Options
	peers  *peerTable
	// gen counts GoBGP servers; events of an older one are ignored. Atomic
	// because the event goroutine must never wait for mu.
	gen atomic.Int64

	mu      sync.Mutex // guards everything below
	cfg     config.BGP
	srv     *server.BgpServer // nil until Start and after Stop
	cancel  context.CancelFunc
	started bool // Start succeeded once; srv == nil then means a restart failed
	stopped bool
	allowed map[netip.Prefix]bool
	// want is the caller's desired set, replayed into a restarted server;
	// sent is what the running server was handed (Advertised). Only the
	// speaker keeps them: the caller hands over the whole set every time.
	want    map[netip.Prefix]route
	sent    map[netip.Prefix]sentRoute
	pending []routing.PeerEvent // synthesized events, reported by emitPending
	// recycling holds failed peers that are out of GoBGP until their idle
	// hold ends (recycle.go).
	recycling map[netip.Addr]bool
	// deferred is set while a restarted speaker holds its peers back until
	// it has something to announce (restart.go).
	deferred bool

	// restartHook, when set (tests only), runs between stopping the old
	// server and starting the new one on a restarting Reconfigure.
	restartHook func()
}

var _ routing.Advertiser = (*Speaker)(nil)

// New validates cfg and returns a speaker that does nothing until Start.
func New(cfg *config.BGP, logger *slog.Logger, opts Options) (*Speaker, error) {
	if err := validate(cfg); err != nil {
		return nil, fmt.Errorf("bgp speaker: %w", err)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Speaker{
		logger:  logger,
		opts:    opts,
		peers:   newPeerTable(),
		cfg:     cloneBGP(cfg),
		allowed: make(map[netip.Prefix]bool),
		want:    make(map[netip.Prefix]route),
		sent:    make(map[netip.Prefix]sentRoute),

		recycling: make(map[netip.Addr]bool),
	}
	return s, nil
}

// Start runs the GoBGP server, installs the policies and adds the peers. The
// allowed set and advertisements given before Start are applied now.
func (s *Speaker) Start(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	if s.started {
		return errors.New("bgp speaker already started")
	}
	if err := s.startLocked(ctx); err != nil {
		return err
	}
	s.started = true
	return nil
}

// errDown is returned while a restarted server failed to come up.
var errDown = errors.New("bgp speaker is down because its restart failed; the set is kept and applied when a reload succeeds")

// startLocked brings up a GoBGP server for s.cfg and replays the allowed and
// desired sets into it.
func (s *Speaker) startLocked(ctx context.Context) (err error) {
	srv := server.NewBgpServer(server.LoggerOption(slog.New(demoteInfo{s.logger.Handler()}).With("component", "gobgp"), nil))
	go srv.Serve()
	defer func() {
		if err != nil {
			srv.Stop()
			for _, p := range s.cfg.Peers {
				s.peers.remove(p.Address)
			}
		}
	}()
	global := &api.Global{Asn: s.cfg.ASN, RouterId: s.cfg.RouterID.String(), ListenPort: -1}
	if s.cfg.ListenPort != 0 {
		global.ListenPort = int32(s.cfg.ListenPort)
		for _, a := range s.cfg.ListenAddresses {
			global.ListenAddresses = append(global.ListenAddresses, a.String())
		}
	}
	if err := srv.StartBgp(ctx, &api.StartBgpRequest{Global: global}); err != nil {
		return fmt.Errorf("start bgp (asn %d, router id %s, port %d): %w", s.cfg.ASN, s.cfg.RouterID, s.cfg.ListenPort, err)
	}
	if err := installPolicies(ctx, srv); err != nil {
		return err
	}
	if err := updateAllowed(ctx, srv, nil, s.allowed); err != nil {
		return err
	}
	gen := s.gen.Add(1)
	wctx, cancel := context.WithCancel(context.Background())
	err = srv.WatchEvent(wctx, server.WatchEventMessageCallbacks{
		OnPeerUpdate: func(ev *apiutil.WatchEventMessage_PeerEvent, at time.Time) { s.onPeerEvent(gen, ev, at) },
	}, server.WatchPeer())
	if err != nil {
		cancel()
		return fmt.Errorf("watch peer events: %w", err)
	}
	s.srv, s.cancel = srv, cancel
	// The routes go into the RIB before any session can come up, so the
	// first UPDATEs and the End-of-RIB carry the whole set.
	clear(s.sent)
	if err := s.applyLocked(); err != nil {
		s.srv, s.cancel = nil, nil
		cancel()
		return err
	}
	if s.deferConnect(gen) {
		s.logger.Info("bgp speaker started", "asn", s.cfg.ASN, "router_id", s.cfg.RouterID, "peers", len(s.cfg.Peers),
			"listen_port", s.cfg.ListenPort, "reason", "graceful restart: connecting after the first announcement")
		return nil
	}
	if err := s.addPeersLocked(ctx); err != nil {
		s.srv, s.cancel = nil, nil
		cancel()
		return err
	}
	s.logger.Info("bgp speaker started", "asn", s.cfg.ASN, "router_id", s.cfg.RouterID, "peers", len(s.cfg.Peers), "listen_port", s.cfg.ListenPort)
	return nil
}

// Set replaces the advertised set (routing.Advertiser). Advertisements for
// prefixes outside the allowed set are refused with ErrNotAllowed; the rest
// are applied. Before Start the set is stored and applied by Start.
func (s *Speaker) Set(ctx context.Context, ads []routing.Advertisement) error {
	want := make(map[netip.Prefix]route, len(ads))
	var errs []error
	for _, ad := range ads {
		r, err := newRoute(ad)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if _, dup := want[r.prefix]; dup {
			errs = append(errs, fmt.Errorf("%s is advertised twice: merge the attributes into one advertisement", r.prefix))
			continue
		}
		want[r.prefix] = r
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	for p := range want {
		if !s.allowed[p] {
			delete(want, p)
			errs = append(errs, fmt.Errorf("%s: %w (add it to the configuration, which feeds SetAllowed)", p, ErrNotAllowed))
		}
	}
	s.want = want
	switch {
	case s.srv != nil:
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("set advertisements: %w", err)
		}
		errs = append(errs, s.applyLocked())
		if s.deferred && len(s.sent) > 0 {
			errs = append(errs, s.connectLocked("first announcement"))
		}
	case s.started:
		errs = append(errs, errDown)
	}
	return errors.Join(errs...)
}

// applyLocked sends the difference between s.want and s.sent to GoBGP.
func (s *Speaker) applyLocked() error {
	change := diffRoutes(s.sent, s.want)
	if change.empty() {
		return nil
	}
	var errs []error
	if len(change.withdraw) > 0 {
		paths := make([]*apiutil.Path, 0, len(change.withdraw))
		for _, r := range change.withdraw {
			p, err := r.path(s.cfg.ASN, true)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			paths = append(paths, p)
		}
		if err := s.srv.DeletePath(apiutil.DeletePathRequest{Paths: paths}); err != nil {
			errs = append(errs, fmt.Errorf("withdraw %d prefixes: %w", len(paths), err))
		} else {
			for _, r := range change.withdraw {
				delete(s.sent, r.prefix)
				s.logger.Debug("withdrawn", "vip", r.prefix)
			}
		}
	}
	if len(change.announce) > 0 {
		paths := make([]*apiutil.Path, 0, len(change.announce))
		for _, r := range change.announce {
			p, err := r.path(s.cfg.ASN, false)
			if err != nil {
				errs = append(errs, err)
				continue
			}
			paths = append(paths, p)
		}
		_, err := s.srv.AddPath(apiutil.AddPathRequest{Paths: paths})
		for _, r := range change.announce {
			s.sent[r.prefix] = sentRoute{route: r, unknown: err != nil}
			if err == nil {
				s.logger.Debug("announced", "vip", r.prefix, "communities", r.communities, "med", r.med, "prepend", r.prepend)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("announce %d prefixes: %w", len(paths), err))
		}
	}
	if len(errs) == 0 {
		s.logger.Info("advertisements updated", "announced", len(change.announce), "withdrawn", len(change.withdraw), "total", len(s.sent))
	}
	return errors.Join(errs...)
}

// Advertised returns the routes the running GoBGP server was handed and
// accepted (routing.Advertiser), sorted by prefix: none before Start, after
// Stop, or while a restarted server is down.
func (s *Speaker) Advertised(ctx context.Context) ([]routing.Advertisement, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]routing.Advertisement, 0, len(s.sent))
	for _, sr := range s.sent {
		if !sr.unknown {
			out = append(out, sr.route.advertisement())
		}
	}
	slices.SortFunc(out, func(a, b routing.Advertisement) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out, nil
}

// SetAllowed sets the prefixes the export policy lets through: the configured
// VIPs. Everything else is rejected on export, even a route that reaches the
// RIB some other way. Routes this speaker announced for prefixes that are no
// longer allowed are withdrawn. Before Start the set is stored.
func (s *Speaker) SetAllowed(prefixes []netip.Prefix) error {
	want := make(map[netip.Prefix]bool, len(prefixes))
	for _, p := range prefixes {
		if !p.IsValid() {
			return fmt.Errorf("allowed prefix %v is invalid", p)
		}
		want[p.Masked()] = true
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return ErrStopped
	}
	var errs []error
	if s.srv != nil {
		if err := updateAllowed(context.Background(), s.srv, s.allowed, want); err != nil {
			return fmt.Errorf("update allowed VIPs: %w", err)
		}
	}
	s.allowed = want
	for p := range s.want {
		if !want[p] {
			delete(s.want, p)
		}
	}
	switch {
	case s.srv != nil:
		errs = append(errs, s.applyLocked())
	case s.started:
		errs = append(errs, errDown)
	}
	return errors.Join(errs...)
}

// Stop ends every session with a Cease (administrative shutdown), waits up to
// ctx's deadline (at most a few seconds) for the NOTIFICATIONs to go out, and
// stops the server. Withdraw first (Set(nil)) for a graceful drain; Stop
// itself only ends the sessions, which also withdraws every route.
func (s *Speaker) Stop(ctx context.Context) error {
	defer s.emitPending()
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.stopped {
		return nil
	}
	s.stopped = true
	return s.stopLocked(ctx, "stopped")
}

// stopLocked sends the Cease to every peer and tears the server down.
func (s *Speaker) stopLocked(ctx context.Context, why string) error {
	if s.srv == nil {
		return nil
	}
	srv := s.srv
	var errs []error
	for _, p := range s.cfg.Peers {
		if s.recycling[p.Address] || s.deferred {
			continue // not in GoBGP right now
		}
		err := srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: p.Address.String(), Communication: shutdownCommunication})
		if err != nil {
			errs = append(errs, fmt.Errorf("send cease to %s: %w", p.Address, err))
		}
	}
	s.waitSessionsDown(ctx)
	srv.Stop()
	s.cancel()
	s.srv, s.cancel = nil, nil
	clear(s.sent) // the sessions ended: nothing is advertised
	clear(s.recycling)
	s.deferred = false
	s.gen.Add(1) // ignore late events of the old server
	// Sessions that never came up produce no event when the server goes:
	// record them as idle too.
	now := time.Now()
	for _, p := range s.cfg.Peers {
		if pe, ok := s.peers.transition(p.Address, "idle", now, ""); ok {
			s.pending = append(s.pending, pe)
		}
	}
	s.logger.Info("bgp speaker "+why, "peers", len(s.cfg.Peers))
	return errors.Join(errs...)
}

// emitPending reports the events recorded while mu was held; called after
// mu is released so OnPeerEvent may call back into the speaker.
func (s *Speaker) emitPending() {
	s.mu.Lock()
	evs := s.pending
	s.pending = nil
	s.mu.Unlock()
	if s.opts.OnPeerEvent == nil {
		return
	}
	for _, pe := range evs {
		s.opts.OnPeerEvent(pe)
	}
}

// waitSessionsDown blocks until no session is established, ctx ends or
// ceaseWait passes.
func (s *Speaker) waitSessionsDown(ctx context.Context) {
	timer := time.NewTimer(ceaseWait)
	defer timer.Stop()
	for {
		up, changed := s.peers.established()
		if len(up) == 0 {
			return
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return
		case <-timer.C:
			s.logger.Warn("sessions still up after sending cease", "peers", up)
			return
		}
	}
}

// addPeersLocked adds every configured neighbor to the running server.
func (s *Speaker) addPeersLocked(ctx context.Context) error {
	for _, p := range s.cfg.Peers {
		if err := s.addPeerLocked(ctx, p); err != nil {
			return err
		}
	}
	return nil
}

// addPeerLocked adds one neighbor to the running server.
func (s *Speaker) addPeerLocked(ctx context.Context, p config.Peer) error {
	s.peers.add(p, time.Now())
	if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: peerToAPI(p, false, s.cfg.GracefulRestart)}); err != nil {
		s.peers.remove(p.Address)
		return fmt.Errorf("add peer %s (asn %d): %w", p.Address, p.ASN, err)
	}
	return nil
}

// cloneBGP copies cfg so later edits by the caller do not leak in.
func cloneBGP(cfg *config.BGP) config.BGP {
	c := *cfg
	c.ListenAddresses = slices.Clone(cfg.ListenAddresses)
	c.Peers = slices.Clone(cfg.Peers)
	if cfg.GracefulRestart != nil {
		gr := *cfg.GracefulRestart
		c.GracefulRestart = &gr
	}
	for i, p := range c.Peers {
		if p.BFD != nil {
			b := *p.BFD
			c.Peers[i].BFD = &b
		}
	}
	return c
}

// demoteInfo hands GoBGP's records to the director's handler with Info
// lowered to Debug: GoBGP logs every routine step at Info, while the speaker
// logs session changes itself. Warnings and errors pass unchanged.
type demoteInfo struct{ h slog.Handler }

func (d demoteInfo) level(l slog.Level) slog.Level {
	if l == slog.LevelInfo {
		return slog.LevelDebug
	}
	return l
}

// Enabled implements slog.Handler.
func (d demoteInfo) Enabled(ctx context.Context, l slog.Level) bool {
	return d.h.Enabled(ctx, d.level(l))
}

// Handle implements slog.Handler.
func (d demoteInfo) Handle(ctx context.Context, r slog.Record) error {
	r.Level = d.level(r.Level)
	return d.h.Handle(ctx, r)
}

// WithAttrs implements slog.Handler.
func (d demoteInfo) WithAttrs(as []slog.Attr) slog.Handler { return demoteInfo{d.h.WithAttrs(as)} }

// WithGroup implements slog.Handler.
func (d demoteInfo) WithGroup(name string) slog.Handler { return demoteInfo{d.h.WithGroup(name)} }
