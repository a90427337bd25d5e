package announcer

import (
	"fmt"
	"maps"
	"net/netip"
	"time"
)

// BackendRef selects backends for an operator override. An empty Service
// matches every service, and a zero Port matches every port, so an operator can
// pause a host everywhere with one call.
type BackendRef struct {
	// Service is the service name ("" for all services).
	Service string
	// Addr is the backend's address.
	Addr netip.Addr
	// Port is the backend's port (0 for all ports).
	Port uint16
}

// String formats r for logs and status ("web/10.0.2.21:80", "*/10.0.2.21:*").
func (r BackendRef) String() string {
	svc, port := r.Service, fmt.Sprint(r.Port)
	if svc == "" {
		svc = "*"
	}
	if r.Port == 0 {
		port = "*"
	}
	if r.Addr.Is6() {
		return fmt.Sprintf("%s/[%s]:%s", svc, r.Addr, port)
	}
	return fmt.Sprintf("%s/%s:%s", svc, r.Addr, port)
}

// Covers reports whether r selects every backend that o selects: the same
// address, and r's service and port are o's or wildcards. Lifting an
// override (EnableBackend, clearing a weight) removes every override its
// reference covers, so "enable 10.0.2.21" lifts a drain that was set with a
// service and a port.
func (r BackendRef) Covers(o BackendRef) bool {
	return r.Addr == o.Addr && (r.Service == "" || r.Service == o.Service) && (r.Port == 0 || r.Port == o.Port)
}

// Note records who set an override, why, and until when.
type Note struct {
	// Reason is the operator's explanation, shown in status.
	Reason string
	// Who identifies the caller (peer credentials or certificate subject).
	Who string
	// Created is when the override was set.
	Created time.Time
	// Expires is when the override lapses; zero means never.
	Expires time.Time
}

// Active reports whether the note applies at now.
func (n Note) Active(now time.Time) bool {
	return n.Expires.IsZero() || now.Before(n.Expires)
}

// WeightNote is a weight override with its note.
type WeightNote struct {
	Note
	// Weight replaces the configured weight.
	Weight int
}

// Overrides are the operator's decisions, held apart from the configuration so
// they survive reloads. The zero value has none. Values are treated as
// immutable: the loop replaces maps rather than mutating shared ones.
type Overrides struct {
	// Drained backends get weight 0 and drain.
	Drained map[BackendRef]Note
	// Weights replace configured weights.
	Weights map[BackendRef]WeightNote
	// DisabledVIPs are gracefully withdrawn.
	DisabledVIPs map[netip.Addr]Note
	// Director, when set, gracefully withdraws every VIP while IPVS keeps forwarding.
	Director *Note
}

// clone returns a copy whose maps can be changed without touching o.
func (o Overrides) clone() Overrides {
	c := Overrides{
		Drained:      maps.Clone(o.Drained),
		Weights:      maps.Clone(o.Weights),
		DisabledVIPs: maps.Clone(o.DisabledVIPs),
		Director:     o.Director,
	}
	if c.Drained == nil {
		c.Drained = map[BackendRef]Note{}
	}
	if c.Weights == nil {
		c.Weights = map[BackendRef]WeightNote{}
	}
	if c.DisabledVIPs == nil {
		c.DisabledVIPs = map[netip.Addr]Note{}
	}
	return c
}

// refsFor lists the refs that can match a backend, most specific first.
func refsFor(service string, addr netip.Addr, port uint16) [4]BackendRef {
	return [4]BackendRef{
		{Service: service, Addr: addr, Port: port},
		{Service: service, Addr: addr},
		{Addr: addr, Port: port},
		{Addr: addr},
	}
}

// drain returns the active drain note for a backend, if any.
func (o Overrides) drain(service string, addr netip.Addr, port uint16, now time.Time) (Note, bool) {
	if len(o.Drained) == 0 {
		return Note{}, false
	}
	for _, r := range refsFor(service, addr, port) {
		if n, ok := o.Drained[r]; ok && n.Active(now) {
			return n, true
		}
	}
	return Note{}, false
}

// weight returns the active weight override for a backend, if any.
func (o Overrides) weight(service string, addr netip.Addr, port uint16, now time.Time) (WeightNote, bool) {
	if len(o.Weights) == 0 {
		return WeightNote{}, false
	}
	for _, r := range refsFor(service, addr, port) {
		if n, ok := o.Weights[r]; ok && n.Active(now) {
			return n, true
		}
	}
	return WeightNote{}, false
}

// disabled returns the active disable note for a VIP, if any.
func (o Overrides) disabled(vip netip.Addr, now time.Time) (Note, bool) {
	n, ok := o.DisabledVIPs[vip]
	if ok && n.Active(now) {
		return n, true
	}
	return Note{}, false
}

// directorDrained reports whether the whole director is drained at now.
func (o Overrides) directorDrained(now time.Time) (Note, bool) {
	if o.Director != nil && o.Director.Active(now) {
		return *o.Director, true
	}
	return Note{}, false
}

// prune drops expired overrides and returns the result and the earliest future
// expiry (zero when none), so the loop can wake up when one lapses.
func (o Overrides) prune(now time.Time) (Overrides, time.Time) {
	c := o.clone()
	var next time.Time
	consider := func(n Note) bool {
		if !n.Active(now) {
			return false
		}
		if !n.Expires.IsZero() && (next.IsZero() || n.Expires.Before(next)) {
			next = n.Expires
		}
		return true
	}
	for k, n := range c.Drained {
		if !consider(n) {
			delete(c.Drained, k)
		}
	}
	for k, n := range c.Weights {
		if !consider(n.Note) {
			delete(c.Weights, k)
		}
	}
	for k, n := range c.DisabledVIPs {
		if !consider(n) {
			delete(c.DisabledVIPs, k)
		}
	}
	if c.Director != nil && !consider(*c.Director) {
		c.Director = nil
	}
	return c, next
}
