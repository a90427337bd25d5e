package config

import (
	"maps"
	"net/netip"
	"slices"
)

// ServiceByName returns a copy of the service called name, for the API calls
// that address services by name.
func (c *Config) ServiceByName(name string) (Service, bool) {
	for i := range c.Services {
		if c.Services[i].Name == name {
			return c.Services[i].Clone(), true
		}
	}
	return Service{}, false
}

// VIPs returns every distinct VIP in file order: the set of routes the
// director may announce.
func (c *Config) VIPs() []netip.Addr {
	var out []netip.Addr
	seen := make(map[netip.Addr]bool)
	for _, s := range c.Services {
		if !seen[s.VIP] {
			seen[s.VIP] = true
			out = append(out, s.VIP)
		}
	}
	return out
}

// ServicesForVIP returns copies of the services on vip, in file order: an
// anycast VIP is servable only when all of them are.
func (c *Config) ServicesForVIP(vip netip.Addr) []Service {
	var out []Service
	for _, s := range c.Services {
		if s.VIP == vip {
			out = append(out, s.Clone())
		}
	}
	return out
}

// HealthTargets returns what the service's check probes, one entry per
// backend in order (the check's port override applied). A local service
// without backends has one implicit target: the VIP itself at the service
// port (or the check port), so the announcement follows the local process.
// min_healthy counts these targets.
func (s Service) HealthTargets() []netip.AddrPort {
	port := func(p uint16) uint16 {
		if s.Health.Port != 0 {
			return s.Health.Port
		}
		return p
	}
	if len(s.Backends) == 0 {
		if s.Forwarding == ForwardLocal {
			return []netip.AddrPort{netip.AddrPortFrom(s.VIP, port(s.Port))}
		}
		return nil
	}
	out := make([]netip.AddrPort, len(s.Backends))
	for i, b := range s.Backends {
		out[i] = netip.AddrPortFrom(b.Address, port(b.Port))
	}
	return out
}

// Clone returns a deep copy of s that shares no memory with the Config.
func (s Service) Clone() Service {
	s.SchedulerFlags = slices.Clone(s.SchedulerFlags)
	s.Backends = slices.Clone(s.Backends)
	s.Health.ExpectStatus = slices.Clone(s.Health.ExpectStatus)
	s.Health.Command = slices.Clone(s.Health.Command)
	s.Advertise = s.Advertise.Clone()
	return s
}

// Clone returns a deep copy of a.
func (a Advertise) Clone() Advertise {
	a.Communities = slices.Clone(a.Communities)
	a.LargeCommunities = slices.Clone(a.LargeCommunities)
	if a.MED != nil {
		m := *a.MED
		a.MED = &m
	}
	if a.ShutdownMED != nil {
		m := *a.ShutdownMED
		a.ShutdownMED = &m
	}
	return a
}

// Clone returns a deep copy of c, the way to derive a modified configuration
// (tests, dry runs) without touching a Config that others share.
func (c *Config) Clone() *Config {
	out := *c
	out.Warnings = make([]*Error, len(c.Warnings))
	for i, w := range c.Warnings {
		cp := *w
		out.Warnings[i] = &cp
	}
	if c.Warnings == nil {
		out.Warnings = nil
	}
	if c.API.TCP != nil {
		t := *c.API.TCP
		out.API.TCP = &t
	}
	if c.BGP != nil {
		b := *c.BGP
		b.ListenAddresses = slices.Clone(b.ListenAddresses)
		b.Peers = slices.Clone(b.Peers)
		for i := range b.Peers {
			if b.Peers[i].BFD != nil {
				bfd := *b.Peers[i].BFD
				b.Peers[i].BFD = &bfd
			}
		}
		out.BGP = &b
	}
	out.IPVS.Sysctls = maps.Clone(c.IPVS.Sysctls)
	if c.IPVS.Sync != nil {
		s := *c.IPVS.Sync
		out.IPVS.Sync = &s
	}
	if c.Services != nil {
		out.Services = make([]Service, len(c.Services))
		for i, s := range c.Services {
			out.Services[i] = s.Clone()
		}
	}
	out.Notify = c.Notify.Clone()
	return &out
}
