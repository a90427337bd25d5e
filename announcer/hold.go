package announcer

import (
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
)

// maxHold bounds how long a service's new backends wait outside the kernel
// for their first verdicts. Every probe has a timeout, so a verdict
// normally comes within the learn burst (targets/LearnRate) plus one
// timeout; the bound only matters if a target never gets one. After it,
// the new backends enter the kernel as before holding existed: those
// without a verdict at weight 0.
const maxHold = 30 * time.Second

// holdNew keeps a service's new destinations (not in the previous plan, so
// not in the kernel) out of the desired state while any of them has no
// verdict yet, and then lets them in together, each at its first verdict's
// weight: one write per destination, as keepalived's start-up makes,
// instead of an add at weight 0 and a weight change after the verdict.
// They enter together, in canonical order, because one added later in the
// middle of that order makes the kernel's list be rebuilt from there
// (delete and add, see ipvs.Diff). A held backend counts as not healthy,
// so its VIP is not advertised on its account before it is in the kernel;
// nothing is advertised during the start-up learn period anyway.
//
// A new service (not in the kernel) whose every backend is held waits too
// (waiting is true: plan leaves it out): created later with its real
// servers, it gets them before its mh scheduler is bound, so the kernel
// builds the 4093-slot table once rather than once per real server (at
// 1,000 services x 10, 10,000 builds of about half a millisecond each
// under emulation). That costs one write per service, the bind.
//
// dests[j] is sp.Backends[j]'s destination; the held ones are removed from
// dests, which is returned.
func (d *drainer) holdNew(key ipvs.Key, sp *ServicePlan, dests []ipvs.Destination) (kept []ipvs.Destination, waiting bool) {
	prevSvc, serviceInKernel := d.in.Memory.Previous.Get(key)
	prev := prevSvc.Destinations
	inKernel := func(ap netip.AddrPort) bool {
		_, adopted := d.in.Memory.Adopted[DestID{Service: key, Dest: ap}]
		return adopted || inDests(prev, ap)
	}
	pending := 0
	for j := range dests {
		if sp.Backends[j].Health.State == health.Unknown && !inKernel(dests[j].AddrPort()) {
			pending++
		}
	}
	if pending == 0 {
		return dests, false
	}
	since, ok := d.in.Memory.HeldSince[key]
	if !ok {
		since = d.in.Now
	}
	until := since.Add(maxHold)
	if !d.in.Now.Before(until) {
		return dests, false
	}
	d.out.HeldSince[key] = since
	d.wake(until)
	kept = dests[:0]
	for j, dest := range dests {
		if inKernel(dest.AddrPort()) {
			kept = append(kept, dest)
			continue
		}
		bp := &sp.Backends[j]
		if bp.Health.State == health.Up && bp.Effective > 0 {
			sp.Healthy--
		}
		bp.Effective, bp.Held = 0, true
		bp.Reason = fmt.Sprintf("not in IPVS yet: %d new backend(s) of this service without a first verdict; they enter together (%s)",
			pending, bp.Reason)
	}
	return kept, len(kept) == 0 && !serviceInKernel
}

// inDests reports whether ds has a destination at ap. Services have a
// handful of destinations: a scan beats a map.
func inDests(ds []ipvs.Destination, ap netip.AddrPort) bool {
	return slices.ContainsFunc(ds, func(d ipvs.Destination) bool { return d.AddrPort() == ap })
}
