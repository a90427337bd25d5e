package announcer

import (
	"slices"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/ipvs"
)

// drainer tracks draining destinations: one that must stop taking new
// connections (unhealthy, drained by the operator, or removed from the
// configuration) is listed at weight 0 with a drain deadline, DrainDelay after
// it started draining. Whether it is deleted, once idle or once the deadline
// has passed, is ipvs.Destination.Drained's decision, made where the
// connections are known (ipvs.Diff). A removed destination is listed until
// its deadline passes; after that Diff deletes it as unlisted.
type drainer struct {
	in   Input
	out  *Memory
	wake func(at time.Time)
}

// track records a destination's draining state and returns its drain
// deadline (zero when it is not draining). The loop wakes up at the deadline
// so the deletion happens on time.
func (d *drainer) track(id DestID, draining bool) time.Time {
	if !draining {
		return time.Time{}
	}
	since, ok := d.in.Memory.DrainingSince[id]
	if !ok {
		since = d.in.Now
	}
	d.out.DrainingSince[id] = since
	end := since.Add(d.in.Config.Director.DrainDelay)
	d.wake(end)
	return end
}

// removedDests returns the draining remainder of destinations that were in the
// previous plan of service key but are no longer configured, until their
// drain deadline passes.
func (d *drainer) removedDests(key ipvs.Key, current []ipvs.Destination) []ipvs.Destination {
	prev, ok := d.in.Memory.Previous.Get(key)
	if !ok {
		return nil
	}
	var out []ipvs.Destination
	for _, pd := range prev.Destinations {
		// Services have a handful of destinations: a scan beats a map.
		if inDests(current, pd.AddrPort()) {
			continue
		}
		pd.DrainUntil = d.track(DestID{Service: key, Dest: pd.AddrPort()}, true)
		pd.Weight, pd.Draining = 0, true
		if !pd.DrainExpired(d.in.Now) {
			out = append(out, pd)
		}
	}
	return out
}

// leftovers returns the previous plan's IPVS services that the configuration
// no longer has (or that became `local`), with their destinations draining.
// A leftover disappears, and is deleted from the kernel, once all its
// destinations' drain deadlines have passed.
func (d *drainer) leftovers(cfg *config.Config) []ipvs.Service {
	configured := map[ipvs.Key]bool{}
	for i := range cfg.Services {
		s := &cfg.Services[i]
		if s.Forwarding != config.ForwardLocal {
			configured[ipvs.Key{VIP: s.VIP, Port: s.Port, Protocol: uint8(s.Protocol)}] = true
		}
	}
	var out []ipvs.Service
	for _, prev := range d.in.Memory.Previous.Services() {
		key := prev.Key
		if configured[key] {
			continue
		}
		if dests := d.removedDests(key, nil); len(dests) > 0 {
			prev.Destinations = dests
			out = append(out, prev)
		}
	}
	slices.SortFunc(out, func(a, b ipvs.Service) int { return a.Key.Compare(b.Key) })
	return out
}
