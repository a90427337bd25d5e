// Package ipvs describes IPVS state and decides how to change it, without
// touching the kernel: the types of a virtual service and its destinations,
// Validate, the canonical destination order, the drain rule, Fingerprint, and
// Diff, which turns a desired set of services into the fewest IPVS writes.
// It imports no netlink code, so the announcer and the control plane can use
// it; ipvs/dataplane applies what Diff decides to a network namespace.
package ipvs

import (
	"cmp"
	"fmt"
	"net/netip"
	"time"
)

// Forwarding is the IPVS packet-forwarding method of a destination.
type Forwarding int

const (
	// DirectRoute rewrites the frame's MAC address (LVS-DR).
	DirectRoute Forwarding = iota + 1
	// Masquerade rewrites the destination address (LVS-NAT).
	Masquerade
	// Tunnel encapsulates the packet in IP-in-IP (LVS-TUN).
	Tunnel
)

// String returns "dr", "nat" or "tunnel".
func (f Forwarding) String() string {
	switch f {
	case DirectRoute:
		return "dr"
	case Masquerade:
		return "nat"
	case Tunnel:
		return "tunnel"
	}
	return fmt.Sprintf("forwarding(%d)", int(f))
}

// Key identifies a virtual service: VIP, port and IP protocol number.
type Key struct {
	// VIP is the virtual address.
	VIP netip.Addr
	// Port is the virtual port.
	Port uint16
	// Protocol is the IP protocol number (6 tcp, 17 udp).
	Protocol uint8
}

// String formats k as "tcp/198.18.0.10:80" for logs and status.
func (k Key) String() string {
	proto := fmt.Sprintf("proto%d", k.Protocol)
	switch k.Protocol {
	case 6:
		proto = "tcp"
	case 17:
		proto = "udp"
	}
	return proto + "/" + netip.AddrPortFrom(k.VIP, k.Port).String()
}

// Compare orders keys by VIP, port and protocol: the order of services in
// plans, diffs and reads.
func (k Key) Compare(o Key) int {
	if c := k.VIP.Compare(o.VIP); c != 0 {
		return c
	}
	if c := cmp.Compare(k.Port, o.Port); c != 0 {
		return c
	}
	return cmp.Compare(k.Protocol, o.Protocol)
}

// Service is a desired (or observed) virtual service.
type Service struct {
	// Key identifies the service.
	Key Key
	// Scheduler is the IPVS scheduler name ("mh", "wlc", ...).
	Scheduler string
	// Flags are scheduler and service flags by name ("mh-port", "mh-fallback").
	Flags []string
	// Persistence is the persistence timeout; 0 disables it.
	Persistence time.Duration
	// Destinations are the real servers.
	Destinations []Destination
}

// Destination is a real server of a service.
type Destination struct {
	// Address and Port locate the real server.
	Address netip.Addr
	// Weight is the IPVS weight; 0 stops new connections.
	Weight int
	// Forwarding is the forwarding method.
	Forwarding Forwarding
	// Conns are the connection counts read from the kernel. They are filled
	// only in observed services (Diff deletes a draining destination once
	// they reach zero) and ignored in desired ones. The full counters are
	// in Handle.Stats: a destination stays small because Apply compares
	// tens of thousands of them on every pass.
	Conns Conns
	// Port is the real server's port.
	Port uint16
	// Draining marks a destination kept only so its connections finish: it is
	// held at weight 0 and deleted once Drained says so.
	Draining bool
	// DrainUntil is when a draining destination is deleted even with
	// connections left; zero waits for the connections to end however long
	// that takes. Ignored unless Draining.
	DrainUntil time.Time
}

// AddrPort is the destination's address and port, which identify it within
// its service.
func (d Destination) AddrPort() netip.AddrPort { return netip.AddrPortFrom(d.Address, d.Port) }

// DrainExpired reports whether d is draining and its drain deadline has
// passed at now, so it is deleted whatever its connections.
func (d Destination) DrainExpired(now time.Time) bool {
	return d.Draining && !d.DrainUntil.IsZero() && !now.Before(d.DrainUntil)
}

// Drained is the one rule that ends a drain: a draining destination is
// deleted once the kernel counts no connections on it (conns) or once its
// drain deadline has passed. It returns why, or "" while d keeps draining
// (or is not draining).
func (d Destination) Drained(conns Conns, now time.Time) string {
	switch {
	case !d.Draining:
		return ""
	case conns.Active+conns.Inactive == 0:
		return "drained: no connections left"
	case d.DrainExpired(now):
		return fmt.Sprintf("drain deadline passed with %d connections left", conns.Active+conns.Inactive)
	}
	return ""
}

// Conns are a destination's current connection counts.
type Conns struct {
	// Active and Inactive are the kernel's ActiveConn and InActConn.
	Active, Inactive int
}

// Stats are a service's or destination's kernel counters.
type Stats struct {
	// ActiveConns and InactiveConns are current connection counts
	// (destinations only).
	ActiveConns, InactiveConns int
	// Connections, PacketsIn, PacketsOut, BytesIn and BytesOut are totals since
	// the entry was created.
	Connections, PacketsIn, PacketsOut, BytesIn, BytesOut uint64
}

// ServiceStats are one service's kernel counters and those of its
// destinations, for status and metrics.
type ServiceStats struct {
	// Stats are the service's totals.
	Stats Stats
	// Destinations are in kernel list order (the order the mh table is built
	// from), so status shows what Fingerprint hashes.
	Destinations []DestinationStats
}

// DestinationStats are one destination's kernel counters with the weight the
// kernel holds, so a draining (weight 0) destination is visible as such.
type DestinationStats struct {
	// Address is the real server's address and port.
	Address netip.AddrPort
	// Weight is the kernel's current weight.
	Weight int
	// Stats are the destination's counters.
	Stats Stats
}
