package announcer

import (
	"cmp"
	"net/netip"
	"slices"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/ipvs"
)

// drainer applies the drain delay: a destination that must stop taking new
// connections (unhealthy, drained by the operator, or removed from the
// configuration) stays in IPVS at weight 0 until DrainDelay has passed since it
// started draining, then leaves the desired state and is deleted.
type drainer struct {
	in   Input
	out  *Memory
	wake func(at time.Time)
}

// track records a destination's draining state and reports whether it stays in
// the desired IPVS state.
func (d *drainer) track(id DestID, draining bool) bool {
	if !draining {
		return true
	}
	since, ok := d.in.Memory.DrainingSince[id]
	if !ok {
		since = d.in.Now
	}
	d.out.DrainingSince[id] = since
	end := since.Add(d.in.Config.Director.DrainDelay)
	if !d.in.Now.Before(end) {
		return false
	}
	d.wake(end)
	return true
}

// removedDests returns the draining remainder of destinations that were in the
// previous plan of service key but are no longer configured.
func (d *drainer) removedDests(key ipvs.Key, current []ipvs.Destination) []ipvs.Destination {
	prev, ok := d.in.Memory.Previous[key]
	if !ok {
		return nil
	}
	var out []ipvs.Destination
	for _, pd := range prev.Destinations {
		// Services have a handful of destinations: a scan beats a map.
		if slices.ContainsFunc(current, func(c ipvs.Destination) bool {
			return c.Address == pd.Address && c.Port == pd.Port
		}) {
			continue
		}
		ap := netip.AddrPortFrom(pd.Address, pd.Port)
		if d.track(DestID{Service: key, Dest: ap}, true) {
			pd.Weight, pd.Draining = 0, true
			out = append(out, pd)
		}
	}
	return out
}

// leftovers returns the previous plan's IPVS services that the configuration
// no longer has (or that became `local`), with their destinations draining.
// A leftover disappears, and is deleted from the kernel, once all its
// destinations have drained away.
func (d *drainer) leftovers(cfg *config.Config) []ipvs.Service {
	configured := map[ipvs.Key]bool{}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if s.Forwarding != config.ForwardLocal {
			configured[ipvs.Key{VIP: s.VIP, Port: s.Port, Protocol: uint8(s.Protocol)}] = true
		}
	}
	var out []ipvs.Service
	for key, prev := range d.in.Memory.Previous {
		if configured[key] {
			continue
		}
		if dests := d.removedDests(key, nil); len(dests) > 0 {
			prev.Destinations = dests
			out = append(out, prev)
		}
	}
	sortServices(out)
	return out
}

// sortServices orders services by key so plans are deterministic.
func sortServices(ss []ipvs.Service) {
	slices.SortFunc(ss, func(a, b ipvs.Service) int { return compareKeys(a.Key, b.Key) })
}

// compareKeys orders service keys by VIP, port and protocol.
func compareKeys(a, b ipvs.Key) int {
	if c := a.VIP.Compare(b.VIP); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Port, b.Port); c != 0 {
		return c
	}
	return cmp.Compare(a.Protocol, b.Protocol)
}
