package dataplane

import (
	"net"
	"net/netip"
	"syscall"
	"time"

	moby "github.com/moby/ipvs"

	"github.com/anycast-director/director/ipvs"
)

// kernel is the part of *moby.Handle this package uses. The real handle
// satisfies it as is; unit tests use a stateful fake kernel.
type kernel interface {
	GetServices() ([]*moby.Service, error)
	GetDestinations(s *moby.Service) ([]*moby.Destination, error)
	NewService(s *moby.Service) error
	UpdateService(s *moby.Service) error
	DelService(s *moby.Service) error
	NewDestination(s *moby.Service, d *moby.Destination) error
	UpdateDestination(s *moby.Service, d *moby.Destination) error
	DelDestination(s *moby.Service, d *moby.Destination) error
	Close()
}

var _ kernel = (*moby.Handle)(nil)

// Forwarding methods as the kernel encodes them (IP_VS_CONN_F_*).
const (
	fwdMask   = 0x0007
	fwdMasq   = 0x0000
	fwdTunnel = 0x0002
	fwdRoute  = 0x0003
)

// kernelKey is the moby service that identifies k; destination writes and
// reads use only these fields.
func kernelKey(k ipvs.Key) *moby.Service {
	s := &moby.Service{Address: net.IP(k.VIP.AsSlice()), Protocol: uint16(k.Protocol), Port: k.Port}
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
func kernelService(s ipvs.Service) *moby.Service {
	ks := kernelKey(s.Key)
	bits, _ := ipvs.FlagBits(s.Scheduler, s.Flags)
	if s.Persistence > 0 {
		bits |= ipvs.FlagPersistent
		ks.Timeout = uint32(s.Persistence / time.Second)
	}
	ks.SchedName = s.Scheduler
	ks.Flags = bits
	return ks
}

// kernelDest is the moby destination for d; d.Weight is sent as is (Diff has
// already set draining destinations to 0).
func kernelDest(d ipvs.Destination) *moby.Destination {
	kd := &moby.Destination{Address: net.IP(d.Address.AsSlice()), Port: d.Port, Weight: d.Weight}
	if d.Address.Is4() {
		kd.AddressFamily = syscall.AF_INET
	} else {
		kd.AddressFamily = syscall.AF_INET6
	}
	switch d.Forwarding {
	case ipvs.DirectRoute:
		kd.ConnectionFlags = fwdRoute
	case ipvs.Tunnel:
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
func serviceFromKernel(ks *moby.Service) (ipvs.Service, bool) {
	if ks.FWMark != 0 || ks.Address == nil {
		return ipvs.Service{}, false
	}
	vip, ok := addrFromKernel(ks.Address, ks.AddressFamily)
	if !ok {
		return ipvs.Service{}, false
	}
	s := ipvs.Service{
		Key:       ipvs.Key{VIP: vip, Port: ks.Port, Protocol: uint8(ks.Protocol)},
		Scheduler: ks.SchedName,
		Flags:     ipvs.FlagNames(ks.SchedName, ks.Flags),
	}
	if ks.Flags&ipvs.FlagPersistent != 0 {
		s.Persistence = time.Duration(ks.Timeout) * time.Second
	}
	return s, true
}

// statsFromKernel converts moby's counters. moby decodes the 32-bit stats
// attribute, so connection and packet totals wrap at 2^32.
func statsFromKernel(st moby.SvcStats) ipvs.Stats {
	return ipvs.Stats{
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
func destFromKernel(kd *moby.Destination) (ipvs.Destination, bool) {
	a, ok := addrFromKernel(kd.Address, kd.AddressFamily)
	if !ok {
		return ipvs.Destination{}, false
	}
	d := ipvs.Destination{Address: a, Port: kd.Port, Weight: kd.Weight}
	switch kd.ConnectionFlags & fwdMask {
	case fwdRoute:
		d.Forwarding = ipvs.DirectRoute
	case fwdTunnel:
		d.Forwarding = ipvs.Tunnel
	case fwdMasq:
		d.Forwarding = ipvs.Masquerade
	}
	d.Conns = ipvs.Conns{Active: kd.ActiveConnections, Inactive: kd.InactiveConnections}
	return d, true
}

// destStatsFromKernel returns an observed destination's full counters.
func destStatsFromKernel(kd *moby.Destination) ipvs.Stats {
	st := statsFromKernel(moby.SvcStats(kd.Stats))
	st.ActiveConns, st.InactiveConns = kd.ActiveConnections, kd.InactiveConnections
	return st
}
