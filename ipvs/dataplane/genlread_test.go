package dataplane

import (
	"encoding/binary"
	"net"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// destReply builds an IPVS_CMD_GET_DEST reply as the kernel sends it: a
// 16-byte address whatever the family.
func destReply(addr net.IP, family uint16, withFamily bool) []byte {
	a16 := make([]byte, 16)
	if v4 := addr.To4(); family == syscall.AF_INET {
		copy(a16, v4)
	} else {
		copy(a16, addr.To16())
	}
	stats := append(nlAttr(ipvsStatsConns, u32(7)), nlAttr(ipvsStatsInBytes, binary.NativeEndian.AppendUint64(nil, 1<<40))...)
	var a []byte
	a = append(a, nlAttr(ipvsDestAttrAddr, a16)...)
	a = append(a, nlAttr(ipvsDestAttrPort, binary.BigEndian.AppendUint16(nil, 8080))...)
	a = append(a, nlAttr(ipvsDestAttrFwdMethod, u32(fwdRoute))...)
	a = append(a, nlAttr(ipvsDestAttrWeight, u32(300))...)
	a = append(a, nlAttr(ipvsDestAttrActiveConns, u32(5))...)
	a = append(a, nlAttr(ipvsDestAttrInactiveConns, u32(9))...)
	a = append(a, nlAttr(ipvsDestAttrStats|unix.NLA_F_NESTED, stats)...)
	if withFamily {
		a = append(a, nlAttr(ipvsDestAttrAddrFamily, u16(family))...)
	}
	return nlAttr(ipvsCmdAttrDest|unix.NLA_F_NESTED, a)
}

// TestDecodeDest: both families, with and without the destination's own
// family attribute (older kernels), decode to what moby/ipvs returns.
func TestDecodeDest(t *testing.T) {
	for _, tc := range []struct {
		name       string
		addr       net.IP
		family     uint16
		withFamily bool
	}{
		{"ipv4", net.ParseIP("10.0.2.21").To4(), syscall.AF_INET, true},
		{"ipv4 without family", net.ParseIP("10.0.2.21").To4(), syscall.AF_INET, false},
		{"ipv6", net.ParseIP("2001:db8::21"), syscall.AF_INET6, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeDest(destReply(tc.addr, tc.family, tc.withFamily), tc.family)
			if err != nil {
				t.Fatal(err)
			}
			want := &moby.Destination{Address: tc.addr, Port: 8080, Weight: 300, ConnectionFlags: fwdRoute,
				AddressFamily: tc.family, ActiveConnections: 5, InactiveConnections: 9,
				Stats: moby.DstStats{Connections: 7, BytesIn: 1 << 40}}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("decoded (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := decodeDest(nlAttr(ipvsCmdAttrService, nil), syscall.AF_INET); err == nil {
		t.Error("a reply without a destination decoded without error")
	}
}
