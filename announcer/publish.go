package announcer

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/routing"
)

// publish builds and stores the status snapshot of a pass and records VIP
// events. Whether a VIP is advertised is what the routing adapter has in
// place after the pass (r.inPlace), never what the loop asked for.
func (l *Loop) publish(ctx context.Context, st *state, p Plan, r passResult) {
	end := l.now()
	s := &Status{
		Director:             st.cfg.Director.Name,
		Config:               st.version(),
		Learning:             p.Learning,
		ShuttingDown:         st.shutdown.active,
		Peers:                l.routes.peers(ctx),
		Overrides:            st.overrides,
		LastPass:             end,
		PassDuration:         end.Sub(r.start),
		Passes:               st.passes,
		FailedPasses:         st.failed,
		WithdrawnForFailures: st.withdrawn,
		State:                l.stateReport(),
		VIPs:                 make([]VIPStatus, 0, len(p.VIPs)),
		Services:             make([]ServiceStatus, 0, len(p.Services)),
	}
	if n, ok := st.overrides.directorDrained(r.start); ok {
		s.Drained = &n
	}
	s.Sysctls, s.Sync = st.settings.Sysctls, st.settings.Sync
	if h, ok := l.deps.Health.(interface{ Load() health.Load }); ok {
		load := h.Load()
		s.HealthLoad = &load
	}
	if r.err != nil {
		s.LastError = r.err.Error()
	}
	s.VIPs = l.vipStatuses(st, p, r, end)
	s.Services = l.serviceStatuses(st, p, r.apply)
	l.status.Store(s)
	l.lastPass.Store(end.UnixNano())
	l.slowest.Store(int64(st.recordPass(end.Sub(r.start))))
	l.onPass(end.Sub(r.start), r.err)
}

// vipStatuses reports every VIP as the routing adapter has it, and records
// the VIPs whose advertised state changed.
func (l *Loop) vipStatuses(st *state, p Plan, r passResult, end time.Time) []VIPStatus {
	advertised := make(map[netip.Addr]routing.Advertisement, len(r.inPlace))
	for _, ad := range r.inPlace {
		advertised[ad.Prefix.Addr()] = ad
	}
	out := make([]VIPStatus, 0, len(p.VIPs))
	var changed vipChanges
	for _, vp := range p.VIPs {
		ad, on := advertised[vp.VIP]
		key := vp.VIP.String()
		l.recordVIP(st, vp, on, end, &changed)
		reason := vp.Reason
		switch {
		case st.withdrawn:
			reason = "withdrawn: reconcile failing"
		case r.wedged && vp.Advertise:
			reason = "withdrawn: announcer loop stuck"
		}
		out = append(out, VIPStatus{VIP: vp.VIP, Advertised: on, Graceful: on && ad.GracefulShutdown,
			Reason: reason, Services: vp.Services, Since: st.adSince[key]})
	}
	changed.log(l.log)
	return out
}

// serviceStatuses reports every service with its programming result,
// fingerprint, counters and backends.
func (l *Loop) serviceStatuses(st *state, p Plan, res ApplyResult) []ServiceStatus {
	out := make([]ServiceStatus, 0, len(p.Services))
	counters := l.latestCounters()
	for i, sp := range p.Services {
		svc := &st.cfg.Services[i]
		ss := ServiceStatus{Name: sp.Name, Key: sp.Key, Forwarding: svc.Forwarding.String(),
			Scheduler: svc.Scheduler, Flags: svc.SchedulerFlags, Healthy: sp.Healthy, Total: sp.Total,
			MinHealthy: sp.MinHealthy, Programmed: true}
		if !sp.Local {
			if err, bad := res.Failed[sp.Key]; bad {
				ss.Programmed, ss.Error = false, err.Error()
			}
			if res.Fingerprint != nil {
				ss.Fingerprint = res.Fingerprint(sp.Key)
			}
		}
		c := counters[sp.Key]
		ss.Counters = c.Service
		ss.Backends = make([]BackendStatus, 0, len(sp.Backends))
		for _, bp := range sp.Backends {
			ss.Backends = append(ss.Backends, BackendStatus{BackendPlan: bp,
				Counters: c.Dests[netip.AddrPortFrom(bp.Address, bp.Port)]})
		}
		out = append(out, ss)
	}
	return out
}

// recordVIP notes vp's advertised state (on) at now: a change moves its
// since, and, unless it is a first sight of a withdrawn VIP, is recorded in
// the event log and collected in changed for the log.
func (l *Loop) recordVIP(st *state, vp VIPPlan, on bool, now time.Time, changed *vipChanges) {
	key := vp.VIP.String()
	if was, seen := st.prevVIPs[key]; !seen || was != on {
		st.adSince[key] = now
		if seen || on {
			l.vipEvent(vp, on, now)
			changed.add(vp, on)
		}
	}
	st.prevVIPs[key] = on
}

// vipEvent records a VIP's advertise/withdraw in the event log (vipChanges
// logs it).
func (l *Loop) vipEvent(vp VIPPlan, on bool, now time.Time) {
	from, to := vipStates(on)
	l.events.Append(Event{Time: now, Kind: EventVIP, Subject: vp.VIP.String(), From: from, To: to, Reason: vp.Reason})
}

// vipStates names the change to advertised (on) or to withdrawn.
func vipStates(on bool) (from, to string) {
	if on {
		return "withdrawn", "advertised"
	}
	return "advertised", "withdrawn"
}

// healthEvents records verdict changes between two snapshots. A target
// that replaced one probing the same thing (a reload changed only the
// timing) is compared with the one it replaced.
func (l *Loop) healthEvents(st *state, snap health.Snapshot, now time.Time) {
	if st.prevHealth != nil {
		firstUp := 0
		var prevByProbe map[string]health.Result
		for key, r := range snap {
			old, ok := st.prevHealth[key]
			if !ok {
				if prevByProbe == nil {
					prevByProbe = byProbeKey(st.prevHealth)
				}
				old, ok = prevByProbe[health.ProbeKeyOf(key)]
			}
			if ok && old.State == r.State {
				continue
			}
			if !ok && r.State == health.Unknown {
				continue
			}
			if old.State == health.Unknown && r.State == health.Up {
				firstUp++
			}
			subject := targetName(key)
			l.log.Debug("backend health changed", "backend", subject, "reason", r.Reason, "state", r.State.String())
			l.events.Append(Event{Time: now, Kind: EventHealth, Subject: subject,
				From: old.State.String(), To: r.State.String(), Reason: r.Reason})
		}
		if firstUp > 0 {
			// The health checker logs these at debug level only.
			l.log.Info("backends passed their first health check", "count", firstUp,
				"reason", "each is in the event log; a first failure is logged one by one")
		}
	}
	st.prevHealth = snap
}

// byProbeKey indexes a snapshot's results by ProbeKey.
func byProbeKey(snap health.Snapshot) map[string]health.Result {
	out := make(map[string]health.Result, len(snap))
	for k, r := range snap {
		out[health.ProbeKeyOf(k)] = r
	}
	return out
}

// targetName shortens a health target key to "type addr:port" for humans.
func targetName(key string) string {
	parts := strings.SplitN(key, "|", 3)
	if len(parts) < 2 {
		return key
	}
	return parts[0] + " " + parts[1]
}

// slowPasses is how many recent passes SlowestPass looks at.
const slowPasses = 16

// recordPass remembers a pass's duration and returns the longest of the
// recent ones.
func (st *state) recordPass(d time.Duration) time.Duration {
	st.recent[st.passes%slowPasses] = d
	return slices.Max(st.recent[:])
}
