package ipvs

import (
	"net"
	"net/netip"
	"syscall"
	"time"

	"github.com/moby/ipvs"
)

// kernel is the part of *ipvs.Handle this package uses. The real handle
// satisfies it as is; unit tests use a stateful fake kernel.
type kernel interface {
	GetServices() ([]*ipvs.Service, error)
	GetDestinations(s *ipvs.Service) ([]*ipvs.Destination, error)
	NewService(s *ipvs.Service) error
	UpdateService(s *ipvs.Service) error
	DelService(s *ipvs.Service) error
	NewDestination(s *ipvs.Service, d *ipvs.Destination) error
	UpdateDestination(s *ipvs.Service, d *ipvs.Destination) error
	DelDestination(s *ipvs.Service, d *ipvs.Destination) error
	Close()
}

var _ kernel = (*ipvs.Handle)(nil)

// Forwarding methods as the kernel encodes them (IP_VS_CONN_F_*).
const (
	fwdMask   = 0x0007
	fwdMasq   = 0x0000
	fwdTunnel = 0x0002
	fwdRoute  = 0x0003
)

// kernelKey is the moby service that identifies k; destination writes and
// reads use only these fields.
func kernelKey(k Key) *ipvs.Service {
	s := &ipvs.Service{Address: net.IP(k.VIP.AsSlice()), Protocol: uint16(k.Protocol), Port: k.Port}
	if k.VIP.Is4() {
		s.AddressFamily = syscall.AF_INET
		s.Netmask = 0xFFFFFFFF // persistence granularity: one client address
	} else {
		s.AddressFamily = syscall.AF_INET6
		s.Netmask = 128 // prefix length; the kernel rejects IPv6 services without it
	}
	return s
}

// kernelService is the full moby service for create and update writes.
func kernelService(s Service) *ipvs.Service {
	ks := kernelKey(s.Key)
	bits, _ := flagBits(s.Scheduler, s.Flags)
	if s.Persistence > 0 {
		bits |= flagPersistent
		ks.Timeout = uint32(s.Persistence / time.Second)
	}
	ks.SchedName = s.Scheduler
	ks.Flags = bits
	return ks
}

// kernelDest is the moby destination for d; d.Weight is sent as is (Diff has
// already set draining destinations to 0).
func kernelDest(d Destination) *ipvs.Destination {
	kd := &ipvs.Destination{Address: net.IP(d.Address.AsSlice()), Port: d.Port, Weight: d.Weight}
	if d.Address.Is4() {
		kd.AddressFamily = syscall.AF_INET
	} else {
		kd.AddressFamily = syscall.AF_INET6
	}
	switch d.Forwarding {
	case DirectRoute:
		kd.ConnectionFlags = fwdRoute
	case Tunnel:
		kd.ConnectionFlags = fwdTunnel
	default:
		kd.ConnectionFlags = fwdMasq
	}
	return kd
}

// addrFromKernel converts a moby address (4 bytes for IPv4, 16 for IPv6).
func addrFromKernel(ip net.IP, family uint16) (netip.Addr, bool) {
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return netip.Addr{}, false
	}
	if family == syscall.AF_INET {
		a = a.Unmap()
	}
	return a, true
}

// serviceFromKernel converts an observed service; ok is false for services
// this package never manages (firewall-mark services).
func serviceFromKernel(ks *ipvs.Service) (Service, bool) {
	if ks.FWMark != 0 || ks.Address == nil {
		return Service{}, false
	}
	vip, ok := addrFromKernel(ks.Address, ks.AddressFamily)
	if !ok {
		return Service{}, false
	}
	s := Service{
		Key:       Key{VIP: vip, Port: ks.Port, Protocol: uint8(ks.Protocol)},
		Scheduler: ks.SchedName,
		Flags:     flagNames(ks.SchedName, ks.Flags),
	}
	if ks.Flags&flagPersistent != 0 {
		s.Persistence = time.Duration(ks.Timeout) * time.Second
	}
	return s, true
}

// statsFromKernel converts moby's counters. moby decodes the 32-bit stats
// attribute, so connection and packet totals wrap at 2^32.
func statsFromKernel(st ipvs.SvcStats) Stats {
	return Stats{
		Connections: uint64(st.Connections),
		PacketsIn:   uint64(st.PacketsIn),
		PacketsOut:  uint64(st.PacketsOut),
		BytesIn:     st.BytesIn,
		BytesOut:    st.BytesOut,
	}
}

// destFromKernel converts an observed destination. A forwarding method this
// package does not program (local node) becomes Forwarding(0), which Diff
// then corrects.
func destFromKernel(kd *ipvs.Destination) (Destination, bool) {
	a, ok := addrFromKernel(kd.Address, kd.AddressFamily)
	if !ok {
		return Destination{}, false
	}
	d := Destination{Address: a, Port: kd.Port, Weight: kd.Weight}
	switch kd.ConnectionFlags & fwdMask {
	case fwdRoute:
		d.Forwarding = DirectRoute
	case fwdTunnel:
		d.Forwarding = Tunnel
	case fwdMasq:
		d.Forwarding = Masquerade
	}
	d.Conns = Conns{Active: kd.ActiveConnections, Inactive: kd.InactiveConnections}
	return d, true
}

// destStatsFromKernel returns an observed destination's full counters.
func destStatsFromKernel(kd *ipvs.Destination) Stats {
	st := statsFromKernel(ipvs.SvcStats(kd.Stats))
	st.ActiveConns, st.InactiveConns = kd.ActiveConnections, kd.InactiveConnections
	return st
}
