package announcer

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/health/check"
	"github.com/anycast-director/director/ipvs"
)

// Change is one line of a dry-run plan.
type Change struct {
	// Kind is "service", "destination", "route" or "health".
	Kind string
	// Action is "add", "change" or "remove"; for health, "keep" (the
	// backend's verdict carries over) or "reset" (it starts over).
	Action string
	// Subject names what changes ("tcp/198.18.0.10:80", "tcp/198.18.0.10:80 -> 10.0.2.21:80",
	// "web 10.0.2.21:80" for a backend's health).
	Subject string
	// Detail says how ("weight 1 -> 0 (draining)", "scheduler wlc -> mh").
	Detail string
}

// String formats c as one line for humans.
func (c Change) String() string {
	s := fmt.Sprintf("%-6s %-11s %s", c.Action, c.Kind, c.Subject)
	if c.Detail != "" {
		s += ": " + c.Detail
	}
	return s
}

// Preview returns what loading cfg would change, without changing anything:
// the plan for cfg is compared with the plan for the running configuration,
// with the same health, overrides and timers. Backends whose check changes,
// or that are new, get a health line saying whether their verdict is kept
// or starts over; every other backend keeps its verdict.
func (l *Loop) Preview(ctx context.Context, cfg *config.Config) ([]Change, error) {
	var out []Change
	err := l.query(ctx, func(st *state) error {
		now := l.now()
		snap := l.deps.Health.Snapshot()
		inPlace, err := l.routes.advertised(ctx)
		if err != nil {
			return fmt.Errorf("read the advertised routes: %w", err)
		}
		in := Input{Health: snap, Overrides: st.overrides, Now: now, Memory: st.mem,
			ShuttingDown: st.shutdown.active, Advertised: vipSet(inPlace)}
		in.Config, in.Keys = st.cfg, st.keys
		before := plan(in)
		in.Keys = nil
		in.Config = cfg
		// Verdicts of checks whose timing alone changes carry over.
		in.Health = snap.Carried(Targets(cfg))
		after := plan(in)
		out = append(localServiceChanges(st.cfg, cfg), diffPlans(before, after, now)...)
		out = append(out, healthChanges(st.cfg, cfg, snap)...)
		return nil
	})
	return out, err
}

// diffPlans lists the IPVS and route differences between two plans at now.
func diffPlans(before, after Plan, now time.Time) []Change {
	var out []Change
	old := map[ipvs.Key]ipvs.Service{}
	for _, s := range before.IPVS {
		old[s.Key] = s
	}
	seen := map[ipvs.Key]bool{}
	held := heldAdds(before, after)
	for _, s := range after.IPVS {
		seen[s.Key] = true
		o, ok := old[s.Key]
		if !ok {
			out = append(out, Change{Kind: "service", Action: "add", Subject: s.Key.String(),
				Detail: fmt.Sprintf("scheduler %s %s", s.Scheduler, strings.Join(s.Flags, ","))})
			out = append(out, diffDests(s.Key, nil, live(s.Destinations, now))...)
			out = append(out, held[s.Key]...)
			continue
		}
		if d := serviceDelta(o, s); d != "" {
			out = append(out, Change{Kind: "service", Action: "change", Subject: s.Key.String(), Detail: d})
		}
		out = append(out, diffDests(s.Key, live(o.Destinations, now), live(s.Destinations, now))...)
		out = append(out, held[s.Key]...)
	}
	for _, sp := range after.Services {
		// A new service that waits for its real servers' first verdicts
		// (holdNew) is not in after's IPVS state yet.
		if !seen[sp.Key] && len(held[sp.Key]) > 0 {
			seen[sp.Key] = true
			out = append(out, Change{Kind: "service", Action: "add", Subject: sp.Key.String(),
				Detail: "with its real servers, once each has a first verdict"})
			out = append(out, held[sp.Key]...)
		}
	}
	for _, s := range before.IPVS {
		if !seen[s.Key] {
			out = append(out, Change{Kind: "service", Action: "remove", Subject: s.Key.String()})
		}
	}
	out = append(out, diffRoutes(before.VIPs, after.VIPs)...)
	return out
}

// heldAdds lists the backends that after adds once they have a first
// verdict (holdNew): they are not in its IPVS state yet, but the change is
// the operator's to see.
func heldAdds(before, after Plan) map[ipvs.Key][]Change {
	was := map[string]bool{}
	for _, sp := range before.Services {
		for _, bp := range sp.Backends {
			if bp.Held {
				was[sp.Key.String()+" -> "+netip.AddrPortFrom(bp.Address, bp.Port).String()] = true
			}
		}
	}
	out := map[ipvs.Key][]Change{}
	for _, sp := range after.Services {
		for _, bp := range sp.Backends {
			subject := sp.Key.String() + " -> " + netip.AddrPortFrom(bp.Address, bp.Port).String()
			if bp.Held && !was[subject] {
				out[sp.Key] = append(out[sp.Key], Change{Kind: "destination", Action: "add", Subject: subject,
					Detail: fmt.Sprintf("weight %d when healthy; it enters IPVS once it and the service's other new backends have a first verdict", bp.Configured)})
			}
		}
	}
	return out
}

// serviceDelta describes changed service settings ("" when equal).
func serviceDelta(a, b ipvs.Service) string {
	var d []string
	if a.Scheduler != b.Scheduler {
		d = append(d, fmt.Sprintf("scheduler %s -> %s", a.Scheduler, b.Scheduler))
	}
	if !slices.Equal(a.Flags, b.Flags) {
		d = append(d, fmt.Sprintf("flags %v -> %v", a.Flags, b.Flags))
	}
	if a.Persistence != b.Persistence {
		d = append(d, fmt.Sprintf("persistence %s -> %s", a.Persistence, b.Persistence))
	}
	return strings.Join(d, ", ")
}

// live drops the destinations whose drain deadline has passed at now: they
// are gone from the kernel in either plan.
func live(ds []ipvs.Destination, now time.Time) []ipvs.Destination {
	return slices.DeleteFunc(slices.Clone(ds), func(d ipvs.Destination) bool { return d.DrainExpired(now) })
}

// diffDests lists destination changes of one service.
func diffDests(key ipvs.Key, before, after []ipvs.Destination) []Change {
	var out []Change
	subject := func(d ipvs.Destination) string {
		return key.String() + " -> " + netip.AddrPortFrom(d.Address, d.Port).String()
	}
	old := map[netip.AddrPort]ipvs.Destination{}
	for _, d := range before {
		old[netip.AddrPortFrom(d.Address, d.Port)] = d
	}
	seen := map[netip.AddrPort]bool{}
	// Address order reads best (plans list destinations in the kernel's
	// canonical order, which is descending).
	byAddr := func(a, b ipvs.Destination) int { return a.AddrPort().Compare(b.AddrPort()) }
	after = slices.SortedFunc(slices.Values(after), byAddr)
	before = slices.SortedFunc(slices.Values(before), byAddr)
	for _, d := range after {
		ap := netip.AddrPortFrom(d.Address, d.Port)
		seen[ap] = true
		o, ok := old[ap]
		switch {
		case !ok:
			out = append(out, Change{Kind: "destination", Action: "add", Subject: subject(d),
				Detail: fmt.Sprintf("weight %d, %s", d.Weight, d.Forwarding)})
		case o.Weight != d.Weight || o.Forwarding != d.Forwarding || o.Draining != d.Draining:
			detail := fmt.Sprintf("weight %d -> %d", o.Weight, d.Weight)
			if d.Draining {
				detail += " (draining)"
			}
			if o.Forwarding != d.Forwarding {
				detail += fmt.Sprintf(", forwarding %s -> %s", o.Forwarding, d.Forwarding)
			}
			out = append(out, Change{Kind: "destination", Action: "change", Subject: subject(d), Detail: detail})
		}
	}
	for _, d := range before {
		if !seen[netip.AddrPortFrom(d.Address, d.Port)] {
			out = append(out, Change{Kind: "destination", Action: "remove", Subject: subject(d)})
		}
	}
	return out
}

// diffRoutes lists VIPs whose advertisement would start or stop.
func diffRoutes(before, after []VIPPlan) []Change {
	var out []Change
	old := map[netip.Addr]VIPPlan{}
	for _, v := range before {
		old[v.VIP] = v
	}
	seen := map[netip.Addr]bool{}
	for _, v := range after {
		seen[v.VIP] = true
		o, known := old[v.VIP]
		switch {
		case v.Advertise && !o.Advertise:
			out = append(out, Change{Kind: "route", Action: "add", Subject: v.Ad.Prefix.String(), Detail: v.Reason})
		case !v.Advertise && !known:
			// A new VIP waits for its first verdicts: it is announced later,
			// not never.
			out = append(out, Change{Kind: "route", Action: "add", Subject: netip.PrefixFrom(v.VIP, v.VIP.BitLen()).String(),
				Detail: "once servable (now: " + v.Reason + ")"})
		case !v.Advertise && o.Advertise:
			out = append(out, Change{Kind: "route", Action: "remove", Subject: v.Ad.Prefix.String(), Detail: v.Reason})
		}
	}
	for _, v := range before {
		if !seen[v.VIP] && v.Advertise {
			out = append(out, Change{Kind: "route", Action: "remove", Subject: v.Ad.Prefix.String(),
				Detail: "VIP no longer configured"})
		}
	}
	return out
}

// healthChanges says, for every backend of next whose health target is not
// one of cur's, whether its verdict is kept (cur probes the same thing, only
// the timing differs: the health scheduler carries the verdict over) or
// starts over (what is probed changed, or nothing probed it before).
func healthChanges(cur, next *config.Config, snap health.Snapshot) []Change {
	running := map[string]bool{}            // Key
	byProbe := map[string]runningTarget{}   // ProbeKey -> a running target
	byBackend := map[string]runningTarget{} // service and backend -> its running target
	for i := range cur.Services {
		svc := &cur.Services[i]
		for _, b := range backendsOf(svc) {
			t := targetFor(svc, b)
			k := runningTarget{key: t.Key(), t: t}
			running[k.key] = true
			byProbe[t.ProbeKey()] = k
			byBackend[backendSubject(svc, b)] = k
		}
	}
	var out []Change
	for i := range next.Services {
		svc := &next.Services[i]
		for _, b := range backendsOf(svc) {
			t := targetFor(svc, b)
			if running[t.Key()] {
				continue
			}
			subject := backendSubject(svc, b)
			old, had := byBackend[subject]
			if same, ok := byProbe[t.ProbeKey()]; ok {
				out = append(out, Change{Kind: "health", Action: "keep", Subject: subject,
					Detail: keptDetail(snap[same.key].State, old, had, t)})
				continue
			}
			out = append(out, Change{Kind: "health", Action: "reset", Subject: subject,
				Detail: resetDetail(old, had, t)})
		}
	}
	return out
}

// runningTarget is a health target of the running configuration and its key.
type runningTarget struct {
	key string
	t   health.Target
}

// backendSubject names a backend in a health change: "web 10.0.2.21:80".
func backendSubject(svc *config.Service, b config.Backend) string {
	port := b.Port
	if port == 0 {
		port = svc.Port
	}
	return svc.Name + " " + netip.AddrPortFrom(b.Address, port).String()
}

// keptDetail explains a kept verdict: which timing changed, or that another
// service already probes the same thing.
func keptDetail(st health.State, old runningTarget, had bool, t health.Target) string {
	why := "the same check already runs for another service"
	if had {
		why = joinChanges(check.Diff(old.t.Spec, t.Spec)) + "; applies from the next probe"
	}
	return fmt.Sprintf("verdict %s kept: %s", st, why)
}

// resetDetail explains a verdict that starts over.
func resetDetail(old runningTarget, had bool, t health.Target) string {
	if !had {
		return fmt.Sprintf("new check: up after %d passing probe(s)", max(t.Spec.Rise, 1))
	}
	var what []string
	if old.t.Addr != t.Addr || old.t.Port != t.Port {
		what = append(what, fmt.Sprintf("target %s -> %s",
			netip.AddrPortFrom(old.t.Addr, old.t.Port), netip.AddrPortFrom(t.Addr, t.Port)))
	}
	what = append(what, joinChanges(check.Diff(old.t.Spec, t.Spec)))
	return "what is probed changed (" + strings.Join(slices.DeleteFunc(what, func(s string) bool { return s == "" }), ", ") +
		"): verdict starts over; the last one holds until the new check's first probe"
}

// joinChanges renders spec changes as "rise 3 -> 4, path "/a" -> "/b"".
func joinChanges(cs []check.Change) string {
	parts := make([]string, len(cs))
	for i, c := range cs {
		parts[i] = c.String()
	}
	return strings.Join(parts, ", ")
}

// localServiceChanges lists the services with forwarding: local that a
// reload adds, removes or changes. They have no IPVS service, so the plans'
// diff does not show them (a dry run that added one used to say "no
// changes").
func localServiceChanges(cur, next *config.Config) []Change {
	subject := func(s *config.Service) string {
		return s.Protocol.String() + "/" + netip.AddrPortFrom(s.VIP, s.Port).String()
	}
	old := map[string]*config.Service{}
	for i := range cur.Services {
		if s := &cur.Services[i]; s.Forwarding == config.ForwardLocal {
			old[subject(s)] = s
		}
	}
	var out []Change
	seen := map[string]bool{}
	for i := range next.Services {
		s := &next.Services[i]
		if s.Forwarding != config.ForwardLocal {
			continue
		}
		k := subject(s)
		seen[k] = true
		o, ok := old[k]
		switch {
		case !ok:
			out = append(out, Change{Kind: "service", Action: "add", Subject: k,
				Detail: fmt.Sprintf("local service %s (no IPVS): its VIP is announced while at least %d of its %d health targets are up", s.Name, s.MinHealthy, len(s.HealthTargets()))})
		default:
			if d := localDelta(o, s); d != "" {
				out = append(out, Change{Kind: "service", Action: "change", Subject: k, Detail: "local service " + s.Name + ": " + d})
			}
		}
	}
	for i := range cur.Services {
		if s := &cur.Services[i]; s.Forwarding == config.ForwardLocal && !seen[subject(s)] {
			out = append(out, Change{Kind: "service", Action: "remove", Subject: subject(s), Detail: "local service " + s.Name})
		}
	}
	return out
}

// localDelta describes what changed in a local service ("" when nothing
// that matters to the announcement did).
func localDelta(a, b *config.Service) string {
	var d []string
	if a.Name != b.Name {
		d = append(d, fmt.Sprintf("name %s -> %s", a.Name, b.Name))
	}
	if !slices.Equal(a.HealthTargets(), b.HealthTargets()) {
		d = append(d, fmt.Sprintf("health targets %v -> %v", a.HealthTargets(), b.HealthTargets()))
	}
	if a.MinHealthy != b.MinHealthy {
		d = append(d, fmt.Sprintf("min_healthy %d -> %d", a.MinHealthy, b.MinHealthy))
	}
	return strings.Join(d, ", ")
}
