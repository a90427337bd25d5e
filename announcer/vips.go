package announcer

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/routing"
)

// vipGroup collects the services that share a VIP: an anycast VIP is servable
// only when every service on it is.
type vipGroup struct {
	vip      netip.Addr
	services []*ServicePlan
	ad       config.Advertise
}

// planVIPs decides, for every configured VIP, whether it is advertised and why,
// and returns the VIPs to bind locally (every non-loopback VIP, advertised or
// not, so IPVS and local services keep receiving traffic while routers move
// away from a withdrawn VIP).
func planVIPs(in Input, svcs []ServicePlan, learning bool, mem *Memory, wake func(time.Time)) ([]VIPPlan, []netip.Addr) {
	groups := make(map[netip.Addr]*vipGroup, len(svcs))
	var order []netip.Addr
	for i := range svcs {
		sp := &svcs[i]
		g, ok := groups[sp.Key.VIP]
		if !ok {
			g = &vipGroup{vip: sp.Key.VIP, ad: in.Config.Services[i].Advertise}
			groups[sp.Key.VIP] = g
			order = append(order, sp.Key.VIP)
		}
		g.services = append(g.services, sp)
	}
	slices.SortFunc(order, func(a, b netip.Addr) int { return a.Compare(b) })

	out := make([]VIPPlan, 0, len(order))
	var bind []netip.Addr
	for _, vip := range order {
		out = append(out, decideVIP(in, groups[vip], learning, mem, wake))
		// Loopback VIPs (a lab or a laptop with announce: none) are local
		// already: the kernel delivers all of 127/8 and ::1 to this host.
		if !vip.IsLoopback() {
			bind = append(bind, vip)
		}
	}
	return out, bind
}

// decideVIP applies the announce policy to one VIP: nothing during the learn
// period; at least min_healthy healthy backends in every service; a hold-down
// before announcing; an immediate withdraw on bad health; a graceful withdraw
// (GRACEFUL_SHUTDOWN community, then withdraw) for operator and shutdown reasons.
func decideVIP(in Input, g *vipGroup, learning bool, mem *Memory, wake func(time.Time)) VIPPlan {
	vp := VIPPlan{VIP: g.vip}
	healthy, total, failing := rollUp(g, &vp)
	servable := !learning && failing == nil
	held := servable && holdDown(in, g.vip, mem, wake)
	operator := operatorReason(in, g.vip)
	switch {
	case operator != "":
		vp.Reason = operator
	case learning:
		vp.Reason = "learning"
	case failing != nil:
		vp.Reason = belowReason(failing, len(g.services) > 1)
	case held:
		vp.Reason = "hold-down " + ratio(healthy, total)
	default:
		vp.Reason = "healthy " + ratio(healthy, total)
	}
	vp.Ad = advertisement(g.vip, g.ad)
	switch {
	case servable && !held && operator == "":
		vp.Advertise = true
	case servable && operator != "" && in.Advertised[g.vip]:
		gracefulWithdraw(in, g, &vp, mem, wake)
	}
	return vp
}

// rollUp names the services and IPVS keys of a VIP in vp and returns its
// healthy and total backends and the first service below min_healthy.
func rollUp(g *vipGroup, vp *VIPPlan) (healthy, total int, failing *ServicePlan) {
	for _, sp := range g.services {
		vp.Services = append(vp.Services, sp.Name)
		if !sp.Local {
			vp.Keys = append(vp.Keys, sp.Key)
		}
		healthy += sp.Healthy
		total += sp.Total
		if !sp.OK && failing == nil {
			failing = sp
		}
	}
	return healthy, total, failing
}

// holdDown records since when a servable VIP has been servable and reports
// whether its hold-down still holds it back.
func holdDown(in Input, vip netip.Addr, mem *Memory, wake func(time.Time)) bool {
	since, ok := in.Memory.ServableSince[vip]
	if !ok {
		since = in.Now
	}
	mem.ServableSince[vip] = since
	if end := since.Add(in.Config.Director.HoldDown); in.Now.Before(end) {
		wake(end)
		return true
	}
	return false
}

// gracefulWithdraw keeps an advertised VIP that an operator or a shutdown
// takes away advertised with GRACEFUL_SHUTDOWN (and the shutdown MED) for the
// graceful period, so routers move traffic away before the withdraw.
func gracefulWithdraw(in Input, g *vipGroup, vp *VIPPlan, mem *Memory, wake func(time.Time)) {
	since, ok := in.Memory.GracefulSince[g.vip]
	if !ok {
		since = in.Now
	}
	end := since.Add(in.Config.Director.GracefulShutdown)
	if !in.Now.Before(end) {
		return
	}
	mem.GracefulSince[g.vip] = since
	wake(end)
	vp.Advertise = true
	vp.Ad.GracefulShutdown = true
	if g.ad.ShutdownMED != nil {
		vp.Ad.MED = g.ad.ShutdownMED
	}
	vp.Reason += fmt.Sprintf(" (graceful shutdown, withdraw in %s)", end.Sub(in.Now).Round(time.Millisecond))
}

// operatorReason returns why an operator decision or a shutdown keeps the VIP
// withdrawn ("" when none does).
func operatorReason(in Input, vip netip.Addr) string {
	if in.ShuttingDown {
		return "shutting down"
	}
	if n, ok := in.Overrides.directorDrained(in.Now); ok {
		return "director drained by operator" + noteSuffix(n)
	}
	if n, ok := in.Overrides.disabled(vip, in.Now); ok {
		return "disabled by operator" + noteSuffix(n)
	}
	return ""
}

// belowReason explains a service without enough healthy backends.
func belowReason(sp *ServicePlan, name bool) string {
	s := fmt.Sprintf("below min_healthy %d/%d", sp.Healthy, sp.Total)
	if sp.Unknown > 0 {
		s += fmt.Sprintf(", %d not yet checked", sp.Unknown)
	}
	if name {
		s += " (service " + sp.Name + ")"
	}
	return s
}

// advertisement builds the route for a VIP from the service's attributes.
func advertisement(vip netip.Addr, a config.Advertise) routing.Advertisement {
	return routing.Advertisement{
		Prefix:           netip.PrefixFrom(vip, vip.BitLen()),
		Communities:      a.Communities,
		LargeCommunities: a.LargeCommunities,
		MED:              a.MED,
		ASPathPrepend:    a.ASPathPrepend,
	}
}

// keysOK reports whether every IPVS service of a VIP was programmed.
func keysOK(keys []ipvs.Key, failed map[ipvs.Key]error) (bool, error) {
	for _, k := range keys {
		if err, bad := failed[k]; bad {
			return false, fmt.Errorf("%s: %w", k, err)
		}
	}
	return true, nil
}

// ratio formats "h/t" without fmt: plan formats one per VIP on every pass.
func ratio(h, t int) string { return strconv.Itoa(h) + "/" + strconv.Itoa(t) }
