package announcer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/routing"
	"github.com/anycast-director/director/statedir"
)

// state is everything the loop goroutine owns.
type state struct {
	cfg  *config.Config
	keys [][]string // TargetKeys(cfg)
	// checked holds the keys the health checks were last given
	// (updateHealth); nil before the first time.
	checked   [][]string
	last      Plan     // the last pass's plan
	history   []loaded // newest last
	keep      int
	nextVer   int
	overrides Overrides
	mem       Memory
	shutdown  shutdown
	persist   persistence

	adSince      map[string]time.Time // VIP -> when its advertised state last changed
	prevHealth   health.Snapshot
	prevVIPs     map[string]bool
	failingSince time.Time
	withdrawn    bool // every VIP withdrawn because passes kept failing
	wakeAt       time.Time
	resyncEvery  time.Duration
	// verify makes the next pass read back what the kernel holds (settings
	// and services) instead of trusting the data plane's record: set at
	// start, on reload and on every resync tick (settings.go).
	verify bool
	// verifyNext makes the pass after the next one read back: a reload
	// that keeps the settings is applied first (verifyReload).
	verifyNext bool
	// verifiedAt is when the last pass that read the kernel back ended,
	// verifyTook how long it took (verifyDue).
	verifiedAt  time.Time
	verifyTook  time.Duration
	settings    ipvs.SettingsReport
	settingsErr error
	// routesTouched is set once the advertiser was first given a set.
	routesTouched bool
	// probing is set once the health checks have their targets
	// (startProbing).
	probing bool
	passes  uint64
	failed  uint64
	recent  [slowPasses]time.Duration // durations of the recent passes

	// read by the route writer's watchdog (Loop.wedgedAt)
	maxFailed   atomic.Int64
	resyncNanos atomic.Int64
}

// loaded is one configuration in the rollback history.
type loaded struct {
	// cfg is nil for a version restored from the state directory until it
	// is loaded again: content is parsed when a rollback needs it.
	cfg     *config.Config
	content []byte
	ver     ConfigVersion
}

// shutdown tracks the graceful shutdown sequence.
type shutdown struct {
	active      bool
	lingerUntil time.Time
	done        chan struct{}
}

// newState builds the loop's state for cfg, taking over what the state
// directory had (restored may be nil), and returns warnings about restored
// entries it could not use.
func newState(cfg *config.Config, now time.Time, keep int, restored *statedir.Restored, saver StateSaver) (*state, []string) {
	st := &state{keep: max(keep, 1), adSince: map[string]time.Time{}, prevVIPs: map[string]bool{},
		verify: true}
	st.persist.saver = saver
	var warns []string
	if restored != nil && restored.File != nil {
		warns = st.restore(restored)
	}
	st.load(cfg, now, "", "start")
	return st, warns
}

// load makes cfg the running configuration and records it in the history
// as a new version, unless its file is the running one's (the same
// digest): reloading an unchanged file adds no version, so the history
// keeps the previous different configurations within reach of a rollback.
// The running Config is replaced either way (secrets read from files or
// the environment may have changed). It reports whether a version was
// added.
func (st *state) load(cfg *config.Config, now time.Time, who, reason string) (ConfigVersion, bool) {
	st.cfg = cfg
	st.keys = TargetKeys(cfg)
	st.maxFailed.Store(int64(max(cfg.Director.MaxFailedResyncs, 1)))
	st.resyncNanos.Store(int64(cfg.Director.ResyncInterval))
	if n := len(st.history); n > 0 && cfg.Digest != "" && st.history[n-1].ver.Digest == cfg.Digest {
		h := &st.history[n-1]
		h.cfg, h.content = cfg, cfg.Content
		return h.ver, false
	}
	st.nextVer++
	v := ConfigVersion{Version: st.nextVer, Digest: cfg.Digest, Source: cfg.Source, Loaded: now, Who: who, Reason: reason}
	st.history = append(st.history, loaded{cfg: cfg, content: cfg.Content, ver: v})
	if len(st.history) > st.keep {
		st.history = slices.Delete(st.history, 0, len(st.history)-st.keep)
	}
	st.persist.dirty = true
	return v, true
}

// version returns the running configuration's version.
func (st *state) version() ConfigVersion { return st.history[len(st.history)-1].ver }

// passResult is what a pass did, for status.
type passResult struct {
	start    time.Time
	apply    ApplyResult
	applyErr error // the data plane's failure of the whole Apply
	err      error
	inPlace  []routing.Advertisement // what the routing adapter has after the pass
	wedged   bool                    // the route writer kept every VIP withdrawn
	phases   phases                  // where the pass's time went
}

// pass runs one reconcile: plan, withdraw, program, advertise, publish.
func (l *Loop) pass(ctx context.Context, st *state) {
	r := passResult{start: l.now()}
	r.phases = newPhases(r.start)
	l.progressed()
	var next time.Time
	st.overrides, next = st.overrides.prune(r.start)
	snap := l.deps.Health.Snapshot()
	l.healthEvents(st, snap, r.start)
	r.phases.mark(l.now(), "health")
	var errs []error
	inPlace, err := l.routes.advertised(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("read the advertised routes: %w", err))
	}
	r.phases.mark(l.now(), "routes")
	p := plan(Input{Config: st.cfg, Health: snap, Overrides: st.overrides, Now: r.start,
		Memory: st.mem, ShuttingDown: st.shutdown.active, Keys: st.keys, Advertised: vipSet(inPlace)})
	r.phases.mark(l.now(), "plan")
	l.progressed()
	leave := st.leaveRoutes(&p, inPlace)
	if !leave {
		errs = append(errs, l.withdrawFirst(ctx, st, p, inPlace))
	}
	verifying := st.verify
	l.verify(ctx, st)
	r.phases.mark(l.now(), "verify")
	l.progressed()
	l.recordNewServices(ctx, st, &p)
	l.progressed()
	var final []routing.Advertisement
	final, errs = l.program(ctx, &p, &r, errs)
	r.phases.mark(l.now(), "program")
	l.startProbing(st)
	if st.withdrawn {
		final = nil
	}
	if !leave {
		r.wedged, err = l.routes.set(ctx, final)
		if err != nil {
			errs = append(errs, fmt.Errorf("advertise: %w", err))
		}
	}
	r.phases.mark(l.now(), "advertise")
	st.last, st.mem = p, p.Memory
	r.err = errors.Join(errs...)
	l.failures(ctx, st, r.err, r.start)
	st.wakeAt = earliest(p.Wake, next)
	if verifying {
		st.verifiedAt = l.now()
		st.verifyTook = st.verifiedAt.Sub(r.start)
	}
	l.verifyLater(st, verifying)
	l.finish(ctx, st, p, &r)
	if r.phases.total() >= slowPassLog {
		l.log.Info("slow reconcile pass", "took", r.phases.total().Round(time.Millisecond), "reason", r.phases.String())
	}
}

// startProbing hands the health checks their targets once the first pass
// has run: VIPs bound, and what the kernel already holds (a restart's
// services) read and adopted, before the first probes compete with that
// work for the CPU. At 100 services x 10 under emulation, with the probes
// started first, the first pass took 13 s. New services are not written in
// the first pass: they wait outside the kernel for their backends' first
// verdicts (holdNew), then enter with their weights, one write per real
// server as keepalived's start-up makes.
func (l *Loop) startProbing(st *state) {
	if st.probing {
		return
	}
	st.probing = true
	l.updateHealth(st)
}

// finish reads what the routing adapter has in place, advances a shutdown,
// publishes status, and tells the route writer the pass finished: a loop that
// was wedged runs another pass, which announces again.
func (l *Loop) finish(ctx context.Context, st *state, p Plan, r *passResult) {
	inPlace, err := l.routes.advertised(ctx)
	if err != nil {
		l.log.Warn("reading the advertised routes for status", "err", err)
		r.err = errors.Join(r.err, fmt.Errorf("read the advertised routes: %w", err))
	}
	r.inPlace = inPlace
	st.recordApplied(&p, r.apply, r.applyErr)
	l.shutdownStep(st, r.start, len(inPlace) > 0)
	r.phases.mark(l.now(), "status")
	l.publish(ctx, st, p, *r)
	r.phases.mark(l.now(), "publish")
	if l.routes.passFinished(ctx) {
		l.log.Info("announcer loop recovered; VIPs may be advertised again")
		l.events.Append(Event{Time: l.now(), Kind: EventDirector, Subject: st.cfg.Director.Name,
			From: "withdrawn", To: "normal", Reason: "announcer loop recovered"})
		l.Poke()
	}
}

// leaveRoutes reports whether this pass leaves the routing adapter alone.
// During the start-up learn period, and while weights adopted from the kernel
// wait for their backends' first verdicts, until it is first given a set, a
// restarted director in announce: kernel mode keeps the routes it had (IPVS
// keeps its adopted weights too) instead of withdrawing and re-announcing
// every VIP. A shutdown always goes through. The reasons of the VIPs kept
// that way say so.
func (st *state) leaveRoutes(p *Plan, inPlace []routing.Advertisement) bool {
	leave := (p.Learning || len(p.Memory.Adopted) > 0) && !st.routesTouched && !st.shutdown.active
	if !leave {
		st.routesTouched = true
		return false
	}
	kept := vipSet(inPlace)
	for i := range p.VIPs {
		if vp := &p.VIPs[i]; kept[vp.VIP] && !vp.Advertise {
			vp.Reason += " (route kept from before the restart until the first verdicts)"
		}
	}
	return true
}

// withdrawFirst hands the routing adapter, before anything is programmed,
// what it has in place and is still wanted (with its new attributes), so a
// VIP that must go is withdrawn before IPVS stops serving it. Nothing is sent
// when nothing must go.
func (l *Loop) withdrawFirst(ctx context.Context, st *state, p Plan, inPlace []routing.Advertisement) error {
	wanted := make(map[netip.Prefix]routing.Advertisement, len(p.VIPs))
	for _, vp := range p.VIPs {
		if vp.Advertise {
			wanted[vp.Ad.Prefix] = vp.Ad
		}
	}
	var keep []routing.Advertisement
	for _, ad := range inPlace {
		if w, ok := wanted[ad.Prefix]; ok && !st.withdrawn {
			keep = append(keep, w)
		}
	}
	if len(keep) == len(inPlace) {
		return nil
	}
	if _, err := l.routes.set(ctx, keep); err != nil {
		return fmt.Errorf("withdraw: %w", err)
	}
	return nil
}

// program binds the local VIPs and programs IPVS (the result goes to r),
// then returns the advertisements of the VIPs whose programming succeeded;
// the others get the failure as their reason in p.
func (l *Loop) program(ctx context.Context, p *Plan, r *passResult, errs []error) ([]routing.Advertisement, []error) {
	bindErr := l.deps.VIPs.Set(ctx, p.LocalVIPs)
	l.progressed()
	if bindErr != nil {
		errs = append(errs, fmt.Errorf("bind VIPs: %w", bindErr))
	}
	res, err := l.apply(ctx, p.IPVS)
	l.progressed()
	r.apply, r.applyErr = res, err
	if err != nil {
		errs = append(errs, fmt.Errorf("program IPVS: %w", err))
	}
	var final []routing.Advertisement
	for i := range p.VIPs {
		vp := &p.VIPs[i]
		if !vp.Advertise {
			continue
		}
		ok, why := keysOK(vp.Keys, res.Failed)
		switch {
		case bindErr != nil:
			vp.Advertise, vp.Reason = false, "programming failed: "+bindErr.Error()
		case !ok:
			vp.Advertise, vp.Reason = false, "programming failed: "+why.Error()
		default:
			final = append(final, vp.Ad)
		}
	}
	return final, errs
}

// vipSet is the set of VIPs of some advertisements.
func vipSet(ads []routing.Advertisement) map[netip.Addr]bool {
	out := make(map[netip.Addr]bool, len(ads))
	for _, ad := range ads {
		out[ad.Prefix.Addr()] = true
	}
	return out
}

// apply programs IPVS, or reports every IPVS service failed without a data plane.
func (l *Loop) apply(ctx context.Context, want []ipvs.Service) (ApplyResult, error) {
	if l.deps.IPVS == nil {
		res := ApplyResult{Failed: map[ipvs.Key]error{}}
		for _, s := range want {
			res.Failed[s.Key] = errIPVSMissing
		}
		return res, nil
	}
	res, err := l.deps.IPVS.Apply(ctx, want)
	l.st.settingsFailed(want, &res)
	return res, err
}

// failures withdraws everything when passes keep failing for longer than
// MaxFailedResyncs resync intervals, and restores normal operation after the
// next successful pass.
func (l *Loop) failures(ctx context.Context, st *state, err error, now time.Time) {
	st.passes++
	if err == nil {
		if st.withdrawn {
			l.log.Info("reconcile recovered; VIPs may be advertised again")
			l.events.Append(Event{Time: now, Kind: EventDirector, Subject: st.cfg.Director.Name,
				From: "withdrawn", To: "normal", Reason: "reconcile recovered"})
			st.withdrawn = false
			l.Poke()
		}
		st.failingSince = time.Time{}
		return
	}
	st.failed++
	l.log.Warn("reconcile pass failed", "err", err)
	if st.failingSince.IsZero() {
		st.failingSince = now
	}
	limit := time.Duration(max(st.cfg.Director.MaxFailedResyncs, 1)) * st.cfg.Director.ResyncInterval
	if !st.withdrawn && now.Sub(st.failingSince) >= limit {
		l.log.Error("reconcile failing for too long; withdrawing every VIP", "err", err,
			"reason", fmt.Sprintf("failing since %s", st.failingSince.Format(time.RFC3339)))
		st.withdrawn = true
		if _, werr := l.routes.set(ctx, nil); werr != nil {
			l.log.Error("withdraw failed", "err", werr)
		}
		l.events.Append(Event{Time: now, Kind: EventDirector, Subject: st.cfg.Director.Name,
			From: "normal", To: "withdrawn", Reason: err.Error()})
	}
}

// shutdownStep advances the graceful shutdown: once nothing is advertised any
// more, IPVS keeps forwarding for the linger period, then Shutdown returns.
func (l *Loop) shutdownStep(st *state, now time.Time, advertising bool) {
	sd := &st.shutdown
	if !sd.active || advertising || sd.done == nil {
		return
	}
	if sd.lingerUntil.IsZero() {
		sd.lingerUntil = now.Add(st.cfg.Director.Linger)
		l.log.Info("all VIPs withdrawn; lingering so established flows finish",
			"reason", fmt.Sprintf("linger %s", st.cfg.Director.Linger))
	}
	if now.Before(sd.lingerUntil) {
		st.wakeAt = earliest(st.wakeAt, sd.lingerUntil)
		return
	}
	close(sd.done)
	sd.done = nil
}

// earliest returns the earlier non-zero time.
func earliest(a, b time.Time) time.Time {
	switch {
	case a.IsZero():
		return b
	case b.IsZero():
		return a
	case b.Before(a):
		return b
	}
	return a
}
