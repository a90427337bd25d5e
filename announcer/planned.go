package announcer

import (
	"github.com/anycast-director/director/ipvs"
)

// Planned is the IPVS state a plan asked for, in the plan's order, with an
// index by key. Plans read the previous one by key (removed backends and
// services drain, new ones wait for verdicts) on every pass. A map built
// afresh on every pass was a fifth of plan()+Diff at 10,000 services, so a
// plan with the same services in the same order as the last one (every
// pass but the first after a reload, adoption or a leftover's end) shares
// its index. Neither the services nor the index change once built.
type Planned struct {
	services []ipvs.Service
	index    map[ipvs.Key]int
}

// NewPlanned indexes services by key; the last of a key listed twice wins.
func NewPlanned(services []ipvs.Service) Planned {
	index := make(map[ipvs.Key]int, len(services))
	for i := range services {
		index[services[i].Key] = i
	}
	return Planned{services: services, index: index}
}

// next is the Planned of services, a later plan: it keeps p's index when
// services lists the same keys in the same order.
func (p Planned) next(services []ipvs.Service) Planned {
	if len(services) != len(p.services) || p.index == nil {
		return NewPlanned(services)
	}
	for i := range services {
		if services[i].Key != p.services[i].Key {
			return NewPlanned(services)
		}
	}
	return Planned{services: services, index: p.index}
}

// Get returns the planned service with key k.
func (p Planned) Get(k ipvs.Key) (ipvs.Service, bool) {
	i, ok := p.index[k]
	if !ok {
		return ipvs.Service{}, false
	}
	return p.services[i], true
}

// Services returns the planned services in plan order. The caller must not
// modify them.
func (p Planned) Services() []ipvs.Service { return p.services }
