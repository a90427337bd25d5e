package announcer

import (
	"context"
	"fmt"
	"maps"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/ipvs"
)

// Drift repair, the loop's side. The kernel can be changed behind the
// daemon's back: IPVS services flushed or weights set by hand, sysctls
// reset, sync daemons stopped, VIPs unbound. Bindings and routes are read
// back on every pass (and the adapters wake the loop on address and route
// events); IPVS has no events, so on resync ticks (verifyDue), at start and
// after a reload (verifyReload) the pass reads back the namespace-wide
// settings and makes the next Apply read the owned services from the kernel. Whatever differs is
// restored in that same pass; the adapters log and count each repair. What
// cannot be restored keeps the VIPs it concerns withdrawn.

// settingsFor is the data plane's namespace-wide settings cfg asks for.
func settingsFor(cfg *config.Config) ipvs.Settings {
	s := ipvs.Settings{ManageSysctls: cfg.IPVS.ManageSysctls, Sysctls: cfg.IPVS.Sysctls}
	if y := cfg.IPVS.Sync; y != nil {
		s.Sync = &ipvs.SyncConfig{Interface: y.Interface, SyncID: y.SyncID, MaxLen: y.MaxMessage,
			Group: y.Group, Port: y.Port, TTL: y.TTL}
	}
	return s
}

// verify, when the pass must read the kernel back (st.verify), keeps the
// settings and makes the coming Apply a full read.
func (l *Loop) verify(ctx context.Context, st *state) {
	if !st.verify || l.deps.IPVS == nil {
		return
	}
	st.verify = false
	l.deps.IPVS.Resync()
	rep, err := l.deps.IPVS.Settings(ctx, settingsFor(st.cfg))
	if err != nil && ctx.Err() != nil {
		// The daemon is stopping: the read was cut short, the settings
		// did not fail. Read them again if a pass still follows.
		st.verify = true
		return
	}
	if err != nil && (st.settingsErr == nil || st.settingsErr.Error() != err.Error()) {
		l.log.Error("IPVS sysctls could not be set; IPVS VIPs stay withdrawn until they are", "err", err)
	}
	if err == nil && st.settingsErr != nil {
		l.log.Info("IPVS sysctls set again; IPVS VIPs may be advertised")
	}
	if e := rep.Sync.Error; e != "" && e != st.settings.Sync.Error {
		l.log.Warn("IPVS connection synchronization does not run as configured", "err", e)
	}
	st.settings, st.settingsErr = rep, err
}

// verifyReload decides when the passes after a reload to cfg read the
// kernel back. Settings that change are kept by the reload's own pass, which
// reads everything back as before. Otherwise the reload's pass programs the
// new configuration from the data plane's record, and the pass right after
// it reads back: at 100 services under emulation the read-back (settings,
// every service) was about half of the time from SIGHUP to the new weights
// in the kernel, and keepalived reads nothing back on a reload.
func (st *state) verifyReload(cfg *config.Config) {
	if st.cfg == nil || !sameSettings(settingsFor(st.cfg), settingsFor(cfg)) {
		st.verify = true
		return
	}
	st.verifyNext = true
}

// verifyLater runs the read-back a reload deferred (verifyReload) in the
// pass after this one, unless this pass read back already.
func (l *Loop) verifyLater(st *state, verified bool) {
	if !st.verifyNext {
		return
	}
	st.verifyNext = false
	if !verified {
		st.verify = true
		l.Poke()
	}
}

// sameSettings reports whether two namespace-wide settings are equal.
func sameSettings(a, b ipvs.Settings) bool {
	if a.ManageSysctls != b.ManageSysctls || !maps.Equal(a.Sysctls, b.Sysctls) || (a.Sync == nil) != (b.Sync == nil) {
		return false
	}
	return a.Sync == nil || *a.Sync == *b.Sync
}

// verifyDue asks the coming pass to read the kernel back, on a resync tick,
// unless the last pass that did took long enough that reading again now
// would spend more than a tenth of the loop's time on it: at 100 services
// under emulation on a loaded machine a full read took seconds per tick, the
// passes that health changes and commands wait for grew to 20 s, and the
// watchdog withdrew every VIP of a healthy director. Start and reload
// always read back (a reload in the pass after its own, verifyReload).
func (st *state) verifyDue(now time.Time) {
	if now.Sub(st.verifiedAt) >= statsDuty*st.verifyTook {
		st.verify = true
	}
}

// settingsFailed marks every IPVS service failed while the sysctls they
// depend on could not be set: flows would break when ECMP moves them, so
// their VIPs are not advertised. The services stay programmed.
func (st *state) settingsFailed(want []ipvs.Service, res *ApplyResult) {
	if st.settingsErr == nil {
		return
	}
	if res.Failed == nil {
		res.Failed = make(map[ipvs.Key]error, len(want))
	}
	for _, s := range want {
		if res.Failed[s.Key] == nil {
			res.Failed[s.Key] = fmt.Errorf("flow-continuity sysctls not in place: %w", st.settingsErr)
		}
	}
}
