package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/ipvs/dataplane"
	"github.com/anycast-director/director/routing"
	"github.com/anycast-director/director/routing/bgp"
)

// ipvsPlane adapts *dataplane.Handle to the announcer's DataPlane.
type ipvsPlane struct{ h *dataplane.Handle }

func (p ipvsPlane) Apply(ctx context.Context, want []ipvs.Service) (announcer.ApplyResult, error) {
	r, err := p.h.Apply(ctx, want)
	return announcer.ApplyResult{Failed: r.Failed, Fingerprint: r.Fingerprint.Get}, err
}

func (p ipvsPlane) Stats(ctx context.Context) (map[ipvs.Key]announcer.Counters, error) {
	raw, err := p.h.Stats(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[ipvs.Key]announcer.Counters, len(raw))
	for k, s := range raw {
		c := announcer.Counters{Service: s.Stats, Dests: make(map[netip.AddrPort]ipvs.Stats, len(s.Destinations))}
		for _, d := range s.Destinations {
			c.Dests[d.Address] = d.Stats
		}
		out[k] = c
	}
	return out, nil
}

func (p ipvsPlane) Settings(ctx context.Context, want ipvs.Settings) (ipvs.SettingsReport, error) {
	return p.h.Settings(ctx, want)
}

func (p ipvsPlane) Resync() { p.h.Resync() }

func (p ipvsPlane) Current(ctx context.Context, keys []ipvs.Key) ([]ipvs.Service, error) {
	return p.h.Current(ctx, keys)
}

// Own hands the services a previous process owned to the handle, which
// deletes them once the plan no longer lists them (announcer.Owner).
func (p ipvsPlane) Own(keys []ipvs.Key) { p.h.Own(keys) }

// missingPlane stands in for IPVS on a kernel without it: every IPVS service
// fails with the reason, so its VIP is never advertised, while `local`
// services keep working.
type missingPlane struct{ err error }

func (m missingPlane) Apply(_ context.Context, want []ipvs.Service) (announcer.ApplyResult, error) {
	res := announcer.ApplyResult{Failed: make(map[ipvs.Key]error, len(want))}
	for _, s := range want {
		res.Failed[s.Key] = m.err
	}
	return res, nil
}

func (missingPlane) Stats(context.Context) (map[ipvs.Key]announcer.Counters, error) { return nil, nil }
func (missingPlane) Current(context.Context, []ipvs.Key) ([]ipvs.Service, error)    { return nil, nil }
func (missingPlane) Resync()                                                        {}

// Settings reports configured synchronization as not running, for the
// same reason as the services.
func (m missingPlane) Settings(_ context.Context, want ipvs.Settings) (ipvs.SettingsReport, error) {
	rep := ipvs.SettingsReport{Sync: ipvs.SyncStatus{Configured: want.Sync != nil}}
	if want.Sync != nil {
		rep.Sync.Error = m.err.Error()
	}
	return rep, nil
}

// hasIPVSServices reports whether cfg needs IPVS at all.
func hasIPVSServices(cfg *config.Config) bool {
	for i := range cfg.Services {
		if cfg.Services[i].Forwarding != config.ForwardLocal {
			return true
		}
	}
	return false
}

// openIPVS opens IPVS in the daemon's namespace, or returns the stand-in
// that reports why IPVS cannot be used. The announcer loop keeps its
// sysctls and sync daemons (DataPlane.Settings); onRepair hears of every
// drift the handle repairs.
func openIPVS(cfg *config.Config, log *slog.Logger, onRepair func(dataplane.Repair)) (announcer.DataPlane, func()) {
	h, err := dataplane.Open("", log, dataplane.WithRepairHook(onRepair))
	if err != nil {
		if hasIPVSServices(cfg) {
			log.Error("IPVS services will not be served", "err", err)
		} else {
			log.Info("IPVS unavailable; only local services configured", "err", err)
		}
		return missingPlane{err: err}, func() {}
	}
	return ipvsPlane{h: h}, func() { h.Close() }
}

// bgpRoutes adds reload support to the BGP speaker: new peers and timers, and
// the export allow-list of configured VIPs.
type bgpRoutes struct{ *bgp.Speaker }

func (b bgpRoutes) Reconfigure(ctx context.Context, cfg *config.Config) error {
	if cfg.BGP == nil {
		return fmt.Errorf("announce bgp needs a bgp section")
	}
	if err := b.SetAllowed(vipPrefixes(cfg)); err != nil {
		return err
	}
	return b.Speaker.Reconfigure(ctx, cfg.BGP)
}

// vipPrefixes lists every configured VIP as a host prefix.
func vipPrefixes(cfg *config.Config) []netip.Prefix {
	var out []netip.Prefix
	for _, v := range cfg.VIPs() {
		out = append(out, netip.PrefixFrom(v, v.BitLen()))
	}
	return out
}

// noRoutes is the advertiser for `announce: none`: it announces nothing and
// reports the set it was given as advertised, so status says what would be
// announced. Only the announcer's route writer calls it.
type noRoutes struct{ ads *[]routing.Advertisement }

func newNoRoutes() noRoutes { return noRoutes{ads: new([]routing.Advertisement)} }

func (n noRoutes) Set(_ context.Context, ads []routing.Advertisement) error {
	*n.ads = slices.Clone(ads)
	return nil
}

func (n noRoutes) Advertised(context.Context) ([]routing.Advertisement, error) {
	out := slices.Clone(*n.ads)
	slices.SortFunc(out, func(a, b routing.Advertisement) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out, nil
}

func (noRoutes) Peers() []routing.PeerStatus { return nil }
