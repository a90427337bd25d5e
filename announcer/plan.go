package announcer

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/routing"
)

// Input is everything plan() decides from. It is a value: plan never changes it.
type Input struct {
	// Config is the running configuration.
	Config *config.Config
	// Health is the latest health snapshot.
	Health health.Snapshot
	// Overrides are the operator's decisions.
	Overrides Overrides
	// Now is the decision time.
	Now time.Time
	// Memory carries timers between passes (the previous Plan's Memory).
	Memory Memory
	// ShuttingDown withdraws every VIP gracefully (SIGTERM).
	ShuttingDown bool
	// Advertised are the VIPs the routing adapter has in place now (the loop
	// asks it before each pass): a VIP that an operator or a shutdown takes
	// away is withdrawn gracefully only if it is advertised.
	Advertised map[netip.Addr]bool
	// Keys are the health target keys per service and backend, as
	// TargetKeys(Config) returns them; nil computes them. The loop computes
	// them once per configuration: formatting 50,000 keys on every pass would
	// dominate the pass.
	Keys [][]string
}

// TargetKeys returns the health target key of every backend of every service
// of cfg, indexed like cfg.Services[i] and backendsOf(svc)[j].
func TargetKeys(cfg *config.Config) [][]string {
	out := make([][]string, len(cfg.Services))
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		bs := backendsOf(svc)
		out[i] = make([]string, len(bs))
		for j, b := range bs {
			out[i][j] = targetFor(svc, b).Key()
		}
	}
	return out
}

// Memory is what plan remembers between passes: when timers started and what
// was programmed. The loop feeds each Plan's Memory into the next. It is plain
// data, easy to persist.
type Memory struct {
	// Learned is set once every target has had a verdict; until then nothing is advertised.
	Learned bool
	// ServableSince is when each VIP became servable (the hold-down start).
	ServableSince map[netip.Addr]time.Time
	// GracefulSince is when a VIP's graceful withdraw began.
	GracefulSince map[netip.Addr]time.Time
	// DrainingSince is when a destination went to weight 0 to drain.
	DrainingSince map[DestID]time.Time
	// Previous is the last planned IPVS state, so removed backends and services drain.
	Previous Planned
	// LastHealth holds verdicts carried across a reload. When a reload
	// changes a check, its target gets a new key without a verdict; the loop
	// seeds LastHealth with every backend's verdict before the reload
	// (Plan.Verdicts), and the backend keeps it until the new check has one,
	// so the reload does not withdraw a healthy VIP. Entries no longer needed
	// are dropped, so steady-state passes carry nothing.
	LastHealth map[BackendID]health.Result
	// Adopted are the weights a restarted daemon found in the kernel. A
	// backend keeps its adopted weight until its health has a verdict (up, or
	// down after a failed probe), so a restart does not zero the weights of a
	// service that is carrying traffic. Entries go once their backend settles.
	Adopted map[DestID]int
	// HeldSince is when each service's new backends began to wait outside
	// the kernel for their first verdicts (see holdNew).
	HeldSince map[ipvs.Key]time.Time
}

// BackendID identifies a backend of a named service across reloads.
type BackendID struct {
	// Service is the service name.
	Service string
	// Backend is the backend's address and port.
	Backend netip.AddrPort
}

// DestID identifies a destination of a virtual service.
type DestID struct {
	// Service is the virtual service.
	Service ipvs.Key
	// Dest is the real server's address and port.
	Dest netip.AddrPort
}

// Plan is the desired state of one pass, with the reasons behind it.
type Plan struct {
	// IPVS is the desired IPVS state (IPVS services, plus draining leftovers).
	IPVS []ipvs.Service
	// LocalVIPs are the VIPs bound to the local VIP interface.
	LocalVIPs []netip.Addr
	// VIPs lists every configured VIP with its decision, sorted by address.
	VIPs []VIPPlan
	// Services lists every configured service in configuration order.
	Services []ServicePlan
	// Learning is true while the start-up learn period lasts.
	Learning bool
	// Memory is the Memory for the next pass.
	Memory Memory
	// Wake is the earliest time a timer matures and plan must run again (zero: none).
	Wake time.Time
}

// VIPPlan is the decision for one VIP.
type VIPPlan struct {
	// VIP is the address.
	VIP netip.Addr
	// Advertise says the VIP may be announced (if its programming succeeds).
	Advertise bool
	// Ad is the advertisement to send when Advertise is set.
	Ad routing.Advertisement
	// Reason explains the decision ("healthy 2/3", "below min_healthy 0/3", ...).
	Reason string
	// Services names the services on this VIP.
	Services []string
	// Keys are the IPVS services on this VIP, whose programming must succeed.
	Keys []ipvs.Key
}

// ServicePlan is the health roll-up of one service.
type ServicePlan struct {
	// Name is the service name.
	Name string
	// Key is its VIP, port and protocol.
	Key ipvs.Key
	// Local is set for `forwarding: local` services (no IPVS).
	Local bool
	// Healthy, Total and MinHealthy are the roll-up counts.
	Healthy, Total, MinHealthy int
	// Unknown counts targets without a verdict yet.
	Unknown int
	// OK says the service has enough healthy backends.
	OK bool
	// Backends are the per-backend decisions.
	Backends []BackendPlan
}

// BackendPlan is the decision for one backend.
type BackendPlan struct {
	// Address and Port locate the backend.
	Address netip.Addr
	// Port is the backend's port.
	Port uint16
	// Target is the health target key.
	Target string
	// Health is its latest health result.
	Health health.Result
	// Configured and Effective are the configured and programmed weights.
	Configured, Effective int
	// Draining says it is held at weight 0 until its connections end.
	Draining bool
	// Deleted says its drain deadline has passed: it is no longer in IPVS.
	Deleted bool
	// Held says it is new and not in IPVS yet: it waits for the first
	// verdicts of the service's other new backends (see holdNew).
	Held bool
	// Reason explains Effective.
	Reason string
	// Override describes an active operator override ("" when none).
	Override string
}

// plan computes the desired state. It is pure: same input, same output.
func plan(in Input) Plan {
	cfg, now := in.Config, in.Now
	p := Plan{Memory: Memory{
		ServableSince: make(map[netip.Addr]time.Time, len(in.Memory.ServableSince)),
		GracefulSince: map[netip.Addr]time.Time{},
		DrainingSince: make(map[DestID]time.Time, len(in.Memory.DrainingSince)),
		LastHealth:    map[BackendID]health.Result{},
		Adopted:       map[DestID]int{},
		HeldSince:     map[ipvs.Key]time.Time{},
	}}
	wake := func(t time.Time) {
		if t.After(now) && (p.Wake.IsZero() || t.Before(p.Wake)) {
			p.Wake = t
		}
	}
	d := drainer{in: in, out: &p.Memory, wake: wake}
	if in.Keys == nil {
		in.Keys = TargetKeys(cfg)
	}

	allKnown := true
	p.Services = make([]ServicePlan, 0, len(cfg.Services))
	p.IPVS = make([]ipvs.Service, 0, len(cfg.Services))
	for i := range cfg.Services {
		sp, svc := planService(&cfg.Services[i], in.Keys[i], in, &d)
		if sp.Unknown > 0 {
			allKnown = false
		}
		p.Services = append(p.Services, sp)
		if svc != nil {
			p.IPVS = append(p.IPVS, *svc)
		}
	}
	p.IPVS = append(p.IPVS, d.leftovers(cfg)...)
	p.Memory.Previous = in.Memory.Previous.next(p.IPVS)
	p.Memory.Learned = in.Memory.Learned || allKnown
	p.Learning = !p.Memory.Learned
	p.VIPs, p.LocalVIPs = planVIPs(in, p.Services, p.Learning, &p.Memory, wake)
	return p
}

// planService decides one service's backends and, for IPVS services, its
// desired IPVS service.
func planService(svc *config.Service, keys []string, in Input, d *drainer) (ServicePlan, *ipvs.Service) {
	key := ipvs.Key{VIP: svc.VIP, Port: svc.Port, Protocol: uint8(svc.Protocol)}
	local := svc.Forwarding == config.ForwardLocal
	sp := ServicePlan{Name: svc.Name, Key: key, Local: local, MinHealthy: svc.MinHealthy}
	backends := backendsOf(svc)
	dests := make([]ipvs.Destination, 0, len(backends))
	sp.Backends = make([]BackendPlan, 0, len(backends))
	for j, b := range backends {
		bp := planBackend(svc, b, keys[j], in, d.out)
		sp.Total++
		switch {
		case bp.Health.State == health.Unknown:
			sp.Unknown++
		case bp.Health.State == health.Up && bp.Effective > 0:
			sp.Healthy++
		}
		if !local {
			id := DestID{Service: key, Dest: netip.AddrPortFrom(bp.Address, bp.Port)}
			dest := ipvs.Destination{Address: bp.Address, Port: bp.Port, Weight: bp.Effective,
				Forwarding: forwardingOf(svc.Forwarding), Draining: bp.Draining}
			dest.DrainUntil = d.track(id, bp.Draining)
			bp.Deleted = dest.DrainExpired(in.Now)
			dests = append(dests, dest)
		}
		sp.Backends = append(sp.Backends, bp)
	}
	waiting := false
	if !local {
		dests, waiting = d.holdNew(key, &sp, dests)
	}
	sp.OK = sp.Healthy >= sp.MinHealthy
	if local || waiting {
		return sp, nil
	}
	dests = append(dests, d.removedDests(key, dests)...)
	ipvs.SortCanonical(dests)
	return sp, &ipvs.Service{Key: key, Scheduler: svc.Scheduler, Flags: svc.SchedulerFlags,
		Persistence: svc.Persistence, Destinations: dests}
}

// planBackend decides one backend's effective weight from health and overrides.
func planBackend(svc *config.Service, b config.Backend, key string, in Input, out *Memory) BackendPlan {
	port := b.Port
	if port == 0 {
		port = svc.Port
	}
	bp := BackendPlan{Address: b.Address, Port: port, Target: key, Configured: b.Weight}
	bp.Health = in.Health[bp.Target]
	id := BackendID{Service: svc.Name, Backend: netip.AddrPortFrom(b.Address, port)}
	if prev, ok := in.Memory.LastHealth[id]; ok && bp.Health.State == health.Unknown {
		out.LastHealth[id] = prev
		bp.Health = prev
		bp.Health.Reason = prev.Reason + " (last verdict; the changed check has none yet)"
	}
	weight := b.Weight
	if w, ok := in.Overrides.weight(svc.Name, b.Address, port, in.Now); ok {
		weight = w.Weight
		bp.Override = fmt.Sprintf("weight %d by operator", w.Weight) + noteSuffix(w.Note)
	}
	drain, drained := in.Overrides.drain(svc.Name, b.Address, port, in.Now)
	did := DestID{Service: ipvs.Key{VIP: svc.VIP, Port: svc.Port, Protocol: uint8(svc.Protocol)}, Dest: id.Backend}
	adoptedWeight, adopted := in.Memory.Adopted[did]
	// Unsettled: no verdict yet, or rising towards its first Up without a
	// failed probe.
	unsettled := bp.Health.State == health.Unknown || (bp.Health.State == health.Down && bp.Health.LastError == "")
	adopted = adopted && unsettled && svc.Forwarding != config.ForwardLocal
	if adopted {
		out.Adopted[did] = adoptedWeight
	}
	switch {
	case drained:
		bp.Draining, bp.Reason = true, "drained by operator"
		bp.Override = "drained by operator" + noteSuffix(drain)
	case adopted:
		bp.Effective = adoptedWeight
		bp.Reason = fmt.Sprintf("adopted from the kernel at weight %d until the first verdict", adoptedWeight)
	case bp.Health.State == health.Down && quiesces(svc):
		// Quiesced, not drained: a configured backend stays in IPVS at
		// weight 0 while it fails. Deleting it and adding it back when it
		// recovers would put it at the head of the kernel's list, and
		// restoring the canonical order (which mh's table depends on)
		// rewrites every destination after it: a flap of one real server
		// would churn every service it is in.
		bp.Reason = "unhealthy: " + bp.Health.Reason
	case bp.Health.State == health.Down:
		bp.Draining, bp.Reason = true, "unhealthy: "+bp.Health.Reason
	case bp.Health.State == health.Unknown:
		bp.Reason = "learning"
	case weight == 0:
		bp.Reason = "weight 0"
	default:
		bp.Effective, bp.Reason = weight, "healthy"
	}
	return bp
}

// quiesces reports whether weight 0 stops new connections to a failing
// backend of svc, so it can stay in IPVS. A hashing scheduler without its
// fallback flag (mh without mh-fallback, sh without sh-fallback) keeps
// sending the flows that hash to a weight-0 destination there, where they
// get a reset: there the failing destination is drained and deleted.
func quiesces(svc *config.Service) bool {
	switch svc.Scheduler {
	case "mh", "sh":
		return slices.Contains(svc.SchedulerFlags, svc.Scheduler+"-fallback")
	}
	return true
}

// noteSuffix renders an override note's reason and expiry for status.
func noteSuffix(n Note) string {
	s := ""
	if n.Reason != "" {
		s += ": " + n.Reason
	}
	if !n.Expires.IsZero() {
		s += " (until " + n.Expires.UTC().Format(time.RFC3339) + ")"
	}
	return s
}

// forwardingOf maps the configuration's forwarding to IPVS's.
func forwardingOf(f config.Forwarding) ipvs.Forwarding {
	switch f {
	case config.ForwardNAT:
		return ipvs.Masquerade
	case config.ForwardTunnel:
		return ipvs.Tunnel
	}
	return ipvs.DirectRoute
}

// Verdicts returns every backend's current verdict, to seed Memory.LastHealth
// when a reload may change the checks.
func (p Plan) Verdicts() map[BackendID]health.Result {
	out := map[BackendID]health.Result{}
	for _, sp := range p.Services {
		for _, bp := range sp.Backends {
			if bp.Health.State != health.Unknown {
				out[BackendID{Service: sp.Name, Backend: netip.AddrPortFrom(bp.Address, bp.Port)}] = bp.Health
			}
		}
	}
	return out
}
