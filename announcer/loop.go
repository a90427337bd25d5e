// Package announcer is the director's brain: one loop that turns configuration,
// health and operator overrides into desired IPVS state and desired route
// advertisements (the pure plan), applies them in a safe order, and publishes
// an immutable status with a reason for every decision.
package announcer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/internal/progress"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/routing"
	"github.com/anycast-director/director/statedir"
)

// HealthSource is the health scheduler as the loop sees it.
type HealthSource interface {
	// Update replaces the set of targets to check.
	Update(targets []health.Target)
	// Snapshot returns the latest verdicts.
	Snapshot() health.Snapshot
	// Changes signals (coalesced) that a verdict changed.
	Changes() <-chan struct{}
}

// DataPlane programs IPVS with the whole desired set of services.
type DataPlane interface {
	// Apply makes the kernel's owned services equal to want. Per-service
	// failures are in the result; the error is for failures of the whole pass.
	Apply(ctx context.Context, want []ipvs.Service) (ApplyResult, error)
	// Stats reads the kernel counters of the owned services.
	Stats(ctx context.Context) (map[ipvs.Key]Counters, error)
	// Settings keeps the namespace-wide IPVS settings (sysctls, sync
	// daemons) as want says, repairing what changed, and reports what the
	// kernel holds. The error lists sysctls that could not be set.
	Settings(ctx context.Context, want ipvs.Settings) (ipvs.SettingsReport, error)
	// Resync makes the next Apply read the owned services from the kernel
	// instead of trusting its record of earlier writes, so drift is found.
	Resync()
	// Current reads what the kernel already has for keys (adoption at start),
	// without writing.
	Current(ctx context.Context, keys []ipvs.Key) ([]ipvs.Service, error)
}

// ApplyResult is what one DataPlane.Apply achieved.
type ApplyResult struct {
	// Failed maps services that could not be programmed to their error.
	Failed map[ipvs.Key]error
	// Fingerprint returns a service's summary of its kernel destination order
	// and weights (nil: none known).
	Fingerprint func(ipvs.Key) string
}

// Counters are one service's kernel counters and its destinations'.
type Counters struct {
	// Service is the virtual service's totals.
	Service ipvs.Stats
	// Dests are per destination.
	Dests map[netip.AddrPort]ipvs.Stats
}

// VIPBinder binds the whole set of VIPs to the local VIP interface.
type VIPBinder interface {
	// Set makes the bound VIPs equal to vips.
	Set(ctx context.Context, vips []netip.Addr) error
}

// Reconfigurer is implemented by advertisers that need the new configuration
// on reload (the BGP speaker's peers and allowed prefixes).
type Reconfigurer interface {
	// Reconfigure applies cfg's routing settings.
	Reconfigure(ctx context.Context, cfg *config.Config) error
}

// Deps are the adapters the loop drives.
type Deps struct {
	// Health runs the checks.
	Health HealthSource
	// IPVS programs the data plane.
	IPVS DataPlane
	// VIPs binds VIPs locally.
	VIPs VIPBinder
	// Routes announces VIPs.
	Routes routing.Advertiser
}

// Options tune the loop; zero values pick defaults.
type Options struct {
	// Now is the clock (time.Now by default).
	Now func() time.Time
	// Events is the event log (a 4096-entry log by default).
	Events *EventLog
	// OnPass is called after each pass with its duration and error (for metrics).
	OnPass func(d time.Duration, err error)
	// State saves the overrides, the configuration history and the owned
	// kernel state (nil: nothing is saved, nothing survives a restart).
	State StateSaver
	// Restored is what the state directory held at start
	// (statedir.Store.Restore); nil for none.
	Restored *statedir.Restored
}

// Loop owns the announcer state; one goroutine (Run) mutates it. Other
// goroutines talk to it through commands and read Status.
type Loop struct {
	log    *slog.Logger
	deps   Deps
	now    func() time.Time
	events *EventLog
	onPass func(time.Duration, error)

	routes   *routeWriter // the only caller of deps.Routes
	cmds     chan command
	poke     chan struct{}
	status   atomic.Pointer[Status]
	running  atomic.Pointer[config.Config]
	lastPass atomic.Int64                          // unix nanoseconds of the last finished pass
	progress atomic.Int64                          // unix nanoseconds of the running pass's last progress (progressed)
	slowest  atomic.Int64                          // nanoseconds of the slowest of the recent passes (slowPasses)
	counters atomic.Pointer[map[ipvs.Key]Counters] // the stats reader's latest reading
	started  atomic.Int64                          // unix nanoseconds of Run's start
	st       *state                                // only touched by the Run goroutine
}

// New builds a loop for cfg. Nothing runs until Run.
func New(cfg *config.Config, deps Deps, logger *slog.Logger, opts Options) *Loop {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.Events == nil {
		opts.Events = NewEventLog(4096)
	}
	if opts.OnPass == nil {
		opts.OnPass = func(time.Duration, error) {}
	}
	l := &Loop{
		log: logger, deps: deps, now: opts.Now, events: opts.Events, onPass: opts.OnPass,
		cmds: make(chan command), poke: make(chan struct{}, 1),
	}
	l.routes = newRouteWriter(deps.Routes, logger, opts.Events, opts.Now, l.wedgedAt)
	now := l.now()
	var warns []string
	l.st, warns = newState(cfg, now, cfg.API.KeepConfigs, opts.Restored, opts.State)
	for _, w := range warns {
		logger.Warn("state directory: entry not restored", "reason", w)
	}
	if r := opts.Restored; r != nil && r.File != nil {
		logger.Info("state restored", "reason", fmt.Sprintf("%d overrides, %d configuration versions, %d owned IPVS services",
			len(r.File.Overrides), len(r.File.Configs), len(r.File.Owned.IPVS)))
	}
	l.running.Store(cfg)
	l.status.Store(&Status{Director: cfg.Director.Name, Config: l.st.version(), Learning: true,
		Overrides: l.st.overrides, State: l.stateReport()})
	return l
}

// Status returns the latest published snapshot. Never nil.
func (l *Loop) Status() *Status { return l.status.Load() }

// Running returns the running configuration (immutable).
func (l *Loop) Running() *config.Config { return l.running.Load() }

// LastPass returns when the loop last finished a pass (zero before the first).
func (l *Loop) LastPass() time.Time {
	n := l.lastPass.Load()
	if n == 0 {
		return time.Time{}
	}
	return time.Unix(0, n)
}

// SlowestPass is the longest of the last passes: a shutdown, which needs a
// few passes, budgets for it.
func (l *Loop) SlowestPass() time.Duration { return time.Duration(l.slowest.Load()) }

// Wedged reports whether the loop has stopped making progress: no pass
// finished, and the running pass (if any) reported no progress, for
// max_failed_resyncs x resync_interval, counted from Run's start until the
// first pass finishes. A long pass that keeps completing steps (each IPVS
// service programmed, each adapter call returning) is not wedged however
// long it takes; a pass stuck in one call is. While it holds, every VIP
// stays withdrawn (the route writer sees to it); a service manager's
// watchdog (systemd WatchdogSec) should stop being fed. False before Run.
func (l *Loop) Wedged() bool {
	at := l.wedgedAt()
	return !at.IsZero() && l.now().After(at)
}

// wedgedAt is the time after which the loop counts as wedged (zero before
// Run): the latest of Run's start, the last finished pass and the running
// pass's last progress, plus the limit.
func (l *Loop) wedgedAt() time.Time {
	last := max(l.started.Load(), l.lastPass.Load(), l.progress.Load())
	if last == 0 {
		return time.Time{}
	}
	limit := time.Duration(l.st.maxFailed.Load()) * time.Duration(l.st.resyncNanos.Load())
	return time.Unix(0, last).Add(limit)
}

// progressed records that the running pass completed a step. The data plane
// calls it through the pass's context (internal/progress) after each
// service it programs, the pass itself after each adapter call.
func (l *Loop) progressed() { l.progress.Store(l.now().UnixNano()) }

// Events returns the loop's event log.
func (l *Loop) Events() *EventLog { return l.events }

// Poke asks the loop for a pass soon (coalesced, never blocks).
func (l *Loop) Poke() {
	select {
	case l.poke <- struct{}{}:
	default:
	}
}

// PeerChanged records a routing session change and refreshes status. It is
// safe to call from the routing adapter's goroutines.
func (l *Loop) PeerChanged(ev routing.PeerEvent) {
	l.events.Append(Event{Time: l.now(), Kind: EventPeer, Subject: ev.Peer.Address.String(),
		From: ev.Previous, To: ev.Peer.State, Reason: ev.Peer.LastError})
	l.Poke()
}

// command is a closure run on the loop goroutine. Its result is sent on res:
// for a read-only command at once, for any other once the pass that follows
// it has applied the change and published status (read-your-writes).
type command struct {
	f        func(*state) error
	res      chan error
	readOnly bool
}

// reply is a command's result waiting for its pass.
type reply struct {
	res chan error
	err error
}

// do runs f on the loop goroutine and returns once the pass that follows it
// has published status, so a Status call right after sees the change.
func (l *Loop) do(ctx context.Context, f func(*state) error) error {
	return l.send(ctx, f, false)
}

// query runs f on the loop goroutine without a pass afterwards.
func (l *Loop) query(ctx context.Context, f func(*state) error) error {
	return l.send(ctx, f, true)
}

func (l *Loop) send(ctx context.Context, f func(*state) error, readOnly bool) error {
	cmd := command{f: f, res: make(chan error, 1), readOnly: readOnly}
	select {
	case l.cmds <- cmd:
	case <-ctx.Done():
		return fmt.Errorf("announcer loop busy: %w", ctx.Err())
	}
	select {
	case err := <-cmd.res:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// errLoopStopped answers commands whose pass never ran.
var errLoopStopped = errors.New("announcer loop stopped before applying the change")

// Run drives the loop until ctx ends. It returns ctx's error.
func (l *Loop) Run(ctx context.Context) error {
	st := l.st
	l.started.Store(l.now().UnixNano())
	ctx = progress.With(ctx, l.progressed)
	wctx, stopRoutes := context.WithCancel(ctx)
	go l.routes.run(wctx, func() string { return l.Status().Director })
	statsDone := make(chan struct{})
	go l.readStats(wctx, statsDone)
	defer func() { stopRoutes(); <-l.routes.done; <-statsDone }()
	l.adopt(ctx, st)
	if err := l.routes.reconfigure(ctx, st.cfg); err != nil {
		l.log.Error("routing configuration failed", "err", err)
	}
	resync := time.NewTicker(st.cfg.Director.ResyncInterval)
	defer resync.Stop()
	wake := time.NewTimer(time.Hour)
	defer wake.Stop()
	var pending []reply // commands waiting for their pass
	defer func() {
		for _, r := range pending {
			r.res <- errLoopStopped
		}
	}()

	pace := newPacer(l.now)
	defer pace.stop()
	for needPass := true; ; needPass = true {
		// Once stopped, no pass: its adapter calls would only fail against
		// the ended context, and the daemon's exit would wait for them (a
		// SIGTERM ends the context right after the shutdown pass).
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if needPass {
			start := l.now()
			l.pass(ctx, st)
			pace.passed(start, l.now())
			l.rearm(st, resync, wake)
			if !l.saveChanges(st, pending) {
				for _, r := range pending {
					r.res <- r.err
				}
			}
			pending = pending[:0]
		}
	wait:
		// A waiting command goes first: picked at random among ready
		// wake-ups, it lost to back-to-back passes (a loop seen as wedged
		// is poked after every pass), and a SIGTERM waited for minutes.
		select {
		case c := <-l.cmds:
			if !l.take(st, c, &pending) {
				goto wait
			}
			continue
		default:
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case c := <-l.cmds:
			if !l.take(st, c, &pending) {
				goto wait
			}
		case <-l.deps.Health.Changes():
			if pace.hold() {
				goto wait
			}
		case <-pace.C():
			pace.fired()
		case <-resync.C:
			st.verifyDue(l.now())
			if pace.hold() {
				goto wait
			}
		case <-wake.C:
		case <-l.poke:
		}
	}
}

// take runs command c on the loop's state. A read-only command is answered
// at once and take returns false; any other waits in pending for the pass
// that follows, and take returns true.
func (l *Loop) take(st *state, c command, pending *[]reply) bool {
	err := c.f(st)
	if c.readOnly {
		c.res <- err
		return false
	}
	*pending = append(*pending, reply{res: c.res, err: err})
	return true
}

// rearm sets the resync ticker (its interval may have been reloaded) and the
// timer of the earliest pending decision.
func (l *Loop) rearm(st *state, resync *time.Ticker, wake *time.Timer) {
	if st.resyncEvery != st.cfg.Director.ResyncInterval {
		st.resyncEvery = st.cfg.Director.ResyncInterval
		resync.Reset(st.resyncEvery)
	}
	if !st.wakeAt.IsZero() {
		wake.Reset(max(st.wakeAt.Sub(l.now()), time.Millisecond))
	}
}

// Owner is implemented by data planes that can take over IPVS services a
// previous process created: Apply then deletes them once they are not
// wanted, like services it programmed itself.
type Owner interface {
	// Own marks keys as owned.
	Own(keys []ipvs.Key)
}

// adopt reads what a previous daemon left in the kernel: the configured
// services, and those the state directory says it owned. The weights of
// configured backends are kept by the first passes until health has a
// verdict (plan's Memory.Adopted); everything read becomes the plan's
// Memory.Previous, so what the configuration no longer has (a service or a
// backend removed while the daemon was down) drains for drain_delay and is
// then deleted, as after a reload.
func (l *Loop) adopt(ctx context.Context, st *state) {
	if l.deps.IPVS == nil {
		return
	}
	configured := map[ipvs.Key]bool{}
	var keys []ipvs.Key
	for i := range st.cfg.Services {
		s := &st.cfg.Services[i]
		if s.Forwarding != config.ForwardLocal {
			k := ipvs.Key{VIP: s.VIP, Port: s.Port, Protocol: uint8(s.Protocol)}
			configured[k] = true
			keys = append(keys, k)
		}
	}
	var leftover []ipvs.Key
	for _, k := range st.persist.restored {
		if !configured[k] {
			leftover = append(leftover, k)
		}
	}
	if o, ok := l.deps.IPVS.(Owner); ok && len(leftover) > 0 {
		o.Own(leftover)
	}
	keys = append(keys, leftover...)
	if len(keys) == 0 {
		return
	}
	have, err := l.deps.IPVS.Current(ctx, keys)
	if err != nil {
		l.log.Warn("reading the kernel's IPVS state for adoption", "err", err)
	}
	st.mem.Adopted = map[DestID]int{}
	st.mem.Previous = NewPlanned(have)
	removed := 0
	for _, svc := range have {
		if !configured[svc.Key] {
			removed++
			continue
		}
		for _, d := range svc.Destinations {
			if d.Weight > 0 {
				st.mem.Adopted[DestID{Service: svc.Key, Dest: netip.AddrPortFrom(d.Address, d.Port)}] = d.Weight
			}
		}
	}
	if len(have) > 0 {
		l.log.Info("adopting IPVS services found in the kernel", "reason",
			fmt.Sprintf("%d services, %d weighted destinations kept until their first verdict; %d services owned before but no longer configured drain for %s, then go",
				len(have)-removed, len(st.mem.Adopted), removed, st.cfg.Director.DrainDelay))
	}
}

// errIPVSMissing is reported for IPVS services when no data plane exists.
var errIPVSMissing = errors.New("IPVS is not available: no data plane configured")
