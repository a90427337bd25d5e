package dataplane

import (
	"encoding/binary"
	"fmt"
	"net"
	"syscall"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// IPVS attributes of a destination read back, and of its counters.
const (
	ipvsCmdGetDest = 8 // IPVS_CMD_GET_DEST

	ipvsDestAttrActiveConns   = 7  // u32
	ipvsDestAttrInactiveConns = 8  // u32
	ipvsDestAttrStats         = 10 // nested, 32-bit counters
	ipvsDestAttrAddrFamily    = 11 // u16

	ipvsStatsConns    = 1 // u32
	ipvsStatsInPkts   = 2 // u32
	ipvsStatsOutPkts  = 3 // u32
	ipvsStatsInBytes  = 4 // u64
	ipvsStatsOutBytes = 5 // u64
)

// GetDestinations lists s's destinations in kernel order, through the same
// socket as the writes: every write of a pass that was not just read is
// preceded by this read, and moby/ipvs's read allocates 64 KiB per answer.
// It decodes the fields this package uses, as moby/ipvs does.
func (k *genlKernel) GetDestinations(s *moby.Service) ([]*moby.Destination, error) {
	replies, err := k.c.request(ipvsCmdGetDest, unix.NLM_F_DUMP, encodeService(s))
	if err != nil {
		return nil, err
	}
	out := make([]*moby.Destination, 0, len(replies))
	for _, r := range replies {
		d, err := decodeDest(r, s.AddressFamily)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

// decodeDest decodes one IPVS_CMD_ATTR_DEST reply; family is the service's,
// for kernels that do not name the destination's.
func decodeDest(reply []byte, family uint16) (*moby.Destination, error) {
	var nested []byte
	for _, a := range parseAttrs(reply) {
		if a.typ == ipvsCmdAttrDest {
			nested = a.data
		}
	}
	if nested == nil {
		return nil, fmt.Errorf("IPVS destination reply without a destination")
	}
	d := &moby.Destination{AddressFamily: family}
	var addr []byte
	for _, a := range parseAttrs(nested) {
		switch a.typ {
		case ipvsDestAttrAddr:
			addr = a.data
		case ipvsDestAttrPort:
			d.Port = be16(a.data)
		case ipvsDestAttrFwdMethod:
			d.ConnectionFlags = ne32(a.data)
		case ipvsDestAttrWeight:
			d.Weight = int(ne32(a.data))
		case ipvsDestAttrUThresh:
			d.UpperThreshold = ne32(a.data)
		case ipvsDestAttrLThresh:
			d.LowerThreshold = ne32(a.data)
		case ipvsDestAttrActiveConns:
			d.ActiveConnections = int(ne32(a.data))
		case ipvsDestAttrInactiveConns:
			d.InactiveConnections = int(ne32(a.data))
		case ipvsDestAttrStats:
			d.Stats = moby.DstStats(decodeStats(a.data))
		case ipvsDestAttrAddrFamily:
			if len(a.data) >= 2 {
				d.AddressFamily = binary.NativeEndian.Uint16(a.data)
			}
		}
	}
	switch {
	case d.AddressFamily == syscall.AF_INET && len(addr) >= 4:
		d.Address = net.IP(append([]byte(nil), addr[:4]...))
	case d.AddressFamily == syscall.AF_INET6 && len(addr) >= 16:
		d.Address = net.IP(append([]byte(nil), addr[:16]...))
	default:
		return nil, fmt.Errorf("IPVS destination reply with family %d and a %d-byte address", d.AddressFamily, len(addr))
	}
	return d, nil
}

// decodeStats decodes the 32-bit counters moby/ipvs decodes too.
func decodeStats(b []byte) moby.SvcStats {
	var s moby.SvcStats
	for _, a := range parseAttrs(b) {
		switch a.typ {
		case ipvsStatsConns:
			s.Connections = ne32(a.data)
		case ipvsStatsInPkts:
			s.PacketsIn = ne32(a.data)
		case ipvsStatsOutPkts:
			s.PacketsOut = ne32(a.data)
		case ipvsStatsInBytes:
			s.BytesIn = ne64(a.data)
		case ipvsStatsOutBytes:
			s.BytesOut = ne64(a.data)
		}
	}
	return s
}

func be16(b []byte) uint16 {
	if len(b) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(b)
}

func ne32(b []byte) uint32 {
	if len(b) < 4 {
		return 0
	}
	return binary.NativeEndian.Uint32(b)
}

func ne64(b []byte) uint64 {
	if len(b) < 8 {
		return 0
	}
	return binary.NativeEndian.Uint64(b)
}
