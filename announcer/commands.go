package announcer

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"

	"github.com/anycast-director/director/config"
)

// Errors callers can test with errors.Is to pick a status code.
var (
	// ErrNotFound means the request names something the configuration lacks.
	ErrNotFound = errors.New("not found")
	// ErrInvalid means the request itself is malformed.
	ErrInvalid = errors.New("invalid request")
)

// DrainBackend sets backends matching ref to weight 0 so they drain.
func (l *Loop) DrainBackend(ctx context.Context, ref BackendRef, note Note) error {
	return l.override(ctx, "drain backend "+ref.String(), note, func(st *state) error {
		if err := st.checkRef(ref); err != nil {
			return err
		}
		st.overrides = st.overrides.clone()
		st.overrides.Drained[ref] = l.stamp(note)
		return nil
	})
}

// EnableBackend removes every drain that ref covers (BackendRef.Covers).
// Enabling a backend that is not drained is not an error. note says who
// lifted it and why.
func (l *Loop) EnableBackend(ctx context.Context, ref BackendRef, note Note) error {
	return l.override(ctx, "enable backend "+ref.String(), note, func(st *state) error {
		if err := liftable(st, ref, coversAny(ref, st.overrides.Drained)); err != nil {
			return err
		}
		st.overrides = st.overrides.clone()
		maps.DeleteFunc(st.overrides.Drained, func(k BackendRef, _ Note) bool { return ref.Covers(k) })
		return nil
	})
}

// SetWeight overrides the weight of backends matching ref; a negative weight
// clears every weight override that ref covers (BackendRef.Covers).
func (l *Loop) SetWeight(ctx context.Context, ref BackendRef, weight int, note Note) error {
	what := fmt.Sprintf("set weight %d on %s", weight, ref)
	if weight < 0 {
		what = "clear weight overrides on " + ref.String()
	}
	return l.override(ctx, what, note, func(st *state) error {
		if weight > 65535 {
			return fmt.Errorf("%w: weight %d is out of range: use 0 to 65535, or a negative weight to clear the override", ErrInvalid, weight)
		}
		if weight < 0 {
			if err := liftable(st, ref, coversAny(ref, st.overrides.Weights)); err != nil {
				return err
			}
			st.overrides = st.overrides.clone()
			maps.DeleteFunc(st.overrides.Weights, func(k BackendRef, _ WeightNote) bool { return ref.Covers(k) })
			return nil
		}
		if err := st.checkRef(ref); err != nil {
			return err
		}
		st.overrides = st.overrides.clone()
		st.overrides.Weights[ref] = WeightNote{Note: l.stamp(note), Weight: weight}
		return nil
	})
}

// liftable checks a lift's reference: one that covers an override is fine
// even when a reload removed the backend (the override must stay liftable);
// otherwise it must match a configured backend.
func liftable(st *state, ref BackendRef, covers bool) error {
	if covers {
		return nil
	}
	return st.checkRef(ref)
}

// coversAny reports whether ref covers a key of m.
func coversAny[V any](ref BackendRef, m map[BackendRef]V) bool {
	for k := range m {
		if ref.Covers(k) {
			return true
		}
	}
	return false
}

// DisableVIP gracefully withdraws a VIP until EnableVIP.
func (l *Loop) DisableVIP(ctx context.Context, vip netip.Addr, note Note) error {
	return l.override(ctx, "disable VIP "+vip.String(), note, func(st *state) error {
		if err := st.checkVIP(vip); err != nil {
			return err
		}
		st.overrides = st.overrides.clone()
		st.overrides.DisabledVIPs[vip] = l.stamp(note)
		return nil
	})
}

// EnableVIP lifts DisableVIP; note says who lifted it and why.
func (l *Loop) EnableVIP(ctx context.Context, vip netip.Addr, note Note) error {
	return l.override(ctx, "enable VIP "+vip.String(), note, func(st *state) error {
		if _, set := st.overrides.DisabledVIPs[vip]; !set {
			if err := st.checkVIP(vip); err != nil {
				return err
			}
		}
		st.overrides = st.overrides.clone()
		delete(st.overrides.DisabledVIPs, vip)
		return nil
	})
}

// DrainDirector gracefully withdraws every VIP while IPVS keeps forwarding.
func (l *Loop) DrainDirector(ctx context.Context, note Note) error {
	return l.override(ctx, "drain director", note, func(st *state) error {
		st.overrides = st.overrides.clone()
		n := l.stamp(note)
		st.overrides.Director = &n
		return nil
	})
}

// UndrainDirector lifts DrainDirector; note says who lifted it and why.
func (l *Loop) UndrainDirector(ctx context.Context, note Note) error {
	return l.override(ctx, "undrain director", note, func(st *state) error {
		st.overrides = st.overrides.clone()
		st.overrides.Director = nil
		return nil
	})
}

// override runs a change of the overrides on the loop and records it with
// who asked and why.
func (l *Loop) override(ctx context.Context, what string, note Note, f func(*state) error) error {
	err := l.do(ctx, func(st *state) error {
		err := f(st)
		if err == nil {
			st.persist.dirty = true
		}
		return err
	})
	if err == nil {
		l.log.Info("operator override", "reason", note.Reason, "override", what, "who", note.Who)
		l.events.Append(Event{Time: l.now(), Kind: EventOverride, Subject: what, Reason: note.Reason, Who: note.Who})
	}
	return err
}

// stamp fills a note's creation time.
func (l *Loop) stamp(n Note) Note {
	n.Created = l.now()
	return n
}

// checkRef fails unless ref matches at least one configured backend.
func (st *state) checkRef(ref BackendRef) error {
	if !ref.Addr.IsValid() {
		return fmt.Errorf("%w: a backend address is required", ErrInvalid)
	}
	if ref.Service != "" && !hasService(st.cfg, ref.Service) {
		return fmt.Errorf("%w: no service named %q in %s", ErrNotFound, ref.Service, st.cfg.Source)
	}
	for i := range st.cfg.Services {
		svc := &st.cfg.Services[i]
		if ref.Service != "" && svc.Name != ref.Service {
			continue
		}
		for _, b := range backendsOf(svc) {
			port := b.Port
			if port == 0 {
				port = svc.Port
			}
			if b.Address == ref.Addr && (ref.Port == 0 || ref.Port == port) {
				return nil
			}
		}
	}
	return fmt.Errorf("%w: no backend matches %s in the running configuration (check `directorctl status`)", ErrNotFound, ref)
}

// checkVIP fails unless vip is configured.
func (st *state) checkVIP(vip netip.Addr) error {
	if !vip.IsValid() {
		return fmt.Errorf("%w: a VIP address is required", ErrInvalid)
	}
	for i := range st.cfg.Services {
		if st.cfg.Services[i].VIP == vip {
			return nil
		}
	}
	return fmt.Errorf("%w: VIP %s is not in the running configuration", ErrNotFound, vip)
}

// Reload makes cfg the running configuration. Overrides are kept. A file
// whose digest is the running one's adds no version (state.load).
func (l *Loop) Reload(ctx context.Context, cfg *config.Config) (ConfigVersion, error) {
	var v ConfigVersion
	err := l.do(ctx, func(st *state) error {
		v = l.switchTo(ctx, st, cfg, "reload")
		return nil
	})
	return v, err
}

// Rollback re-applies a configuration from the history; version 0 means the
// one before the running configuration. A version restored from the state
// directory is parsed again first (off the loop), so a file this directord
// no longer accepts is refused with its errors.
func (l *Loop) Rollback(ctx context.Context, version int) (ConfigVersion, error) {
	cfg, kept, err := l.RollbackTarget(ctx, version)
	if err != nil {
		return ConfigVersion{}, err
	}
	return l.RollbackTo(ctx, cfg, kept)
}

// RollbackTarget returns the configuration Rollback(version) would load,
// parsed, and its version; version 0 means the one before the running
// configuration.
func (l *Loop) RollbackTarget(ctx context.Context, version int) (*config.Config, ConfigVersion, error) {
	if version == 0 {
		err := l.query(ctx, func(st *state) error {
			if len(st.history) < 2 {
				return fmt.Errorf("%w: there is no previous configuration to roll back to (kept: %v)", ErrNotFound, st.versions())
			}
			version = st.history[len(st.history)-2].ver.Version
			return nil
		})
		if err != nil {
			return nil, ConfigVersion{}, err
		}
	}
	return l.KeptConfig(ctx, version)
}

// RollbackTo makes cfg, the kept version kept (from RollbackTarget), the
// running configuration. It fails if kept left the history meanwhile.
func (l *Loop) RollbackTo(ctx context.Context, cfg *config.Config, kept ConfigVersion) (ConfigVersion, error) {
	var v ConfigVersion
	err := l.do(ctx, func(st *state) error {
		if !slices.ContainsFunc(st.history, func(h loaded) bool { return h.ver.Version == kept.Version }) {
			return fmt.Errorf("%w: configuration version %d is no longer in the history (kept: %v)", ErrNotFound, kept.Version, st.versions())
		}
		v = l.switchTo(ctx, st, cfg, fmt.Sprintf("rollback to version %d", kept.Version))
		return nil
	})
	return v, err
}

// History lists the configurations kept for rollback, oldest first.
func (l *Loop) History(ctx context.Context) ([]ConfigVersion, error) {
	var out []ConfigVersion
	err := l.query(ctx, func(st *state) error {
		out = st.versions()
		return nil
	})
	return out, err
}

func (st *state) versions() []ConfigVersion {
	out := make([]ConfigVersion, 0, len(st.history))
	for _, h := range st.history {
		out = append(out, h.ver)
	}
	return out
}

// switchTo loads cfg on the loop goroutine and hands its targets and routing
// settings to the adapters.
func (l *Loop) switchTo(ctx context.Context, st *state, cfg *config.Config, why string) ConfigVersion {
	now := l.now()
	why = withOperatorReason(ctx, why)
	st.verifyReload(cfg)
	v, added := st.load(cfg, now, whoFrom(ctx), why)
	l.running.Store(cfg)
	st.mem.LastHealth = st.last.Verdicts()
	l.updateHealth(st)
	if err := l.routes.reconfigure(ctx, cfg); err != nil {
		l.log.Error("routing reconfiguration failed", "err", err)
	}
	to := fmt.Sprintf("version %d (%s)", v.Version, v.Digest)
	if !added {
		to += " unchanged"
		l.log.Info("configuration unchanged; no new version", "reason", why, "version", v.Version, "digest", v.Digest)
	} else {
		l.log.Info("configuration loaded", "reason", why, "version", v.Version, "digest", v.Digest)
	}
	l.events.Append(Event{Time: now, Kind: EventReload, Subject: cfg.Source, To: to, Reason: why, Who: whoFrom(ctx)})
	return v
}

// Shutdown withdraws every VIP gracefully (GRACEFUL_SHUTDOWN first, for
// Director.GracefulShutdown), keeps IPVS forwarding for Director.Linger, and
// returns when that is done or ctx ends. Run must be running.
func (l *Loop) Shutdown(ctx context.Context) error {
	var done chan struct{}
	err := l.query(ctx, func(st *state) error {
		if !st.shutdown.active {
			st.shutdown = shutdown{active: true, done: make(chan struct{})}
			l.log.Info("graceful shutdown started", "reason", fmt.Sprintf("graceful %s, linger %s",
				st.cfg.Director.GracefulShutdown, st.cfg.Director.Linger))
			l.events.Append(Event{Time: l.now(), Kind: EventDirector, Subject: st.cfg.Director.Name,
				To: "shutting down"})
			l.withdrawAtOnce(ctx, st)
		}
		done = st.shutdown.done
		return nil
	})
	if err != nil {
		return err
	}
	if done == nil {
		return nil
	}
	// A pass withdraws what withdrawAtOnce left, and runs the linger.
	l.Poke()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("graceful shutdown cut short: %w", ctx.Err())
	}
}

// withdrawAtOnce withdraws every VIP as the shutdown starts, when nothing
// needs the graceful period first (graceful_shutdown 0, or nothing
// advertised: a drained director), and starts the linger. A stop then
// does not wait for a reconcile pass that plans and programs every service
// (at 1,000 services under emulation, about a second) only to advertise
// nothing: IPVS keeps what it has either way, and with linger 0 the
// shutdown is done here. The VIPs are logged and recorded as a pass would.
// When the routing adapter fails or still has routes, the pass does it.
func (l *Loop) withdrawAtOnce(ctx context.Context, st *state) {
	inPlace, err := l.routes.advertised(ctx)
	if err != nil || (len(inPlace) > 0 && st.cfg.Director.GracefulShutdown > 0) {
		return
	}
	if len(inPlace) > 0 {
		if _, err := l.routes.set(ctx, nil); err != nil {
			return
		}
		if inPlace, err = l.routes.advertised(ctx); err != nil || len(inPlace) > 0 {
			return
		}
	}
	st.routesTouched = true
	now := l.now()
	var changed vipChanges
	for _, vp := range st.last.VIPs {
		vp.Reason = "shutting down"
		l.recordVIP(st, vp, false, now, &changed)
	}
	changed.log(l.log)
	l.shutdownStep(st, now, false)
}

// hasService reports whether cfg has a service called name.
func hasService(cfg *config.Config, name string) bool {
	for i := range cfg.Services {
		if cfg.Services[i].Name == name {
			return true
		}
	}
	return false
}
