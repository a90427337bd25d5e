package dataplane

import (
	"encoding/binary"
	"net"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// IPVS generic netlink commands and attributes the writes use
// (include/uapi/linux/ip_vs.h).
const (
	ipvsCmdNewService = 1 // IPVS_CMD_NEW_SERVICE
	ipvsCmdSetService = 2 // IPVS_CMD_SET_SERVICE
	ipvsCmdDelService = 3 // IPVS_CMD_DEL_SERVICE
	ipvsCmdNewDest    = 5 // IPVS_CMD_NEW_DEST
	ipvsCmdSetDest    = 6 // IPVS_CMD_SET_DEST
	ipvsCmdDelDest    = 7 // IPVS_CMD_DEL_DEST

	ipvsCmdAttrService = 1 // IPVS_CMD_ATTR_SERVICE, nested
	ipvsCmdAttrDest    = 2 // IPVS_CMD_ATTR_DEST, nested

	ipvsSvcAttrAF        = 1 // u16
	ipvsSvcAttrProtocol  = 2 // u16
	ipvsSvcAttrAddr      = 3 // 4 or 16 bytes
	ipvsSvcAttrPort      = 4 // u16, network order
	ipvsSvcAttrFWMark    = 5 // u32
	ipvsSvcAttrSchedName = 6 // NUL-terminated
	ipvsSvcAttrFlags     = 7 // struct ip_vs_flags: flags, mask
	ipvsSvcAttrTimeout   = 8 // u32, seconds
	ipvsSvcAttrNetmask   = 9 // u32

	ipvsDestAttrAddr      = 1 // 4 or 16 bytes
	ipvsDestAttrPort      = 2 // u16, network order
	ipvsDestAttrFwdMethod = 3 // u32
	ipvsDestAttrWeight    = 4 // u32
	ipvsDestAttrUThresh   = 5 // u32
	ipvsDestAttrLThresh   = 6 // u32
)

// genlKernel reads IPVS through moby/ipvs and writes it through a generic
// netlink socket of its own. moby/ipvs spends far more on each write than
// the kernel does: a 64 KiB receive buffer allocated per answer, a
// getsockname and a read deadline per request. At 1,000 services x 10 the
// 12,000 writes of a start-up made hundreds of megabytes of garbage, and
// under emulation each write cost several times what ipvsadm's does.
type genlKernel struct {
	*moby.Handle
	c *genlConn
}

// openKernel opens both sockets in the namespace at nsPath.
func openKernel(nsPath string) (kernel, error) {
	h, err := moby.New(nsPath)
	if err != nil {
		return nil, err
	}
	c, err := openGenl(nsPath)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &genlKernel{Handle: h, c: c}, nil
}

// Close releases both sockets.
func (k *genlKernel) Close() {
	k.Handle.Close()
	k.c.close()
}

// NewService creates s.
func (k *genlKernel) NewService(s *moby.Service) error { return k.write(ipvsCmdNewService, s, nil) }

// UpdateService changes s's scheduler, flags, timeout and netmask in place.
func (k *genlKernel) UpdateService(s *moby.Service) error { return k.write(ipvsCmdSetService, s, nil) }

// DelService deletes s.
func (k *genlKernel) DelService(s *moby.Service) error { return k.write(ipvsCmdDelService, s, nil) }

// NewDestination adds d to s.
func (k *genlKernel) NewDestination(s *moby.Service, d *moby.Destination) error {
	return k.write(ipvsCmdNewDest, s, d)
}

// UpdateDestination changes d's weight, forwarding and thresholds in s.
func (k *genlKernel) UpdateDestination(s *moby.Service, d *moby.Destination) error {
	return k.write(ipvsCmdSetDest, s, d)
}

// DelDestination removes d from s.
func (k *genlKernel) DelDestination(s *moby.Service, d *moby.Destination) error {
	return k.write(ipvsCmdDelDest, s, d)
}

// write sends one command for service s (and destination d) and waits for
// its ack.
func (k *genlKernel) write(cmd uint8, s *moby.Service, d *moby.Destination) error {
	attrs := encodeService(s)
	if d != nil {
		attrs = append(attrs, encodeDest(d)...)
	}
	_, err := k.c.request(cmd, 0, attrs)
	return err
}

// encodeService encodes s as IPVS_CMD_ATTR_SERVICE, with the same
// attributes moby/ipvs sends, so the kernel sees identical requests.
func encodeService(s *moby.Service) []byte {
	var a []byte
	a = append(a, nlAttr(ipvsSvcAttrAF, u16(s.AddressFamily))...)
	if s.FWMark != 0 {
		a = append(a, nlAttr(ipvsSvcAttrFWMark, u32(s.FWMark))...)
	} else {
		a = append(a, nlAttr(ipvsSvcAttrProtocol, u16(s.Protocol))...)
		a = append(a, nlAttr(ipvsSvcAttrAddr, ipBytes(s.Address))...)
		a = append(a, nlAttr(ipvsSvcAttrPort, binary.BigEndian.AppendUint16(nil, s.Port))...)
	}
	a = append(a, nlAttr(ipvsSvcAttrSchedName, append([]byte(s.SchedName), 0))...)
	flags := binary.NativeEndian.AppendUint32(u32(s.Flags), 0xFFFFFFFF)
	a = append(a, nlAttr(ipvsSvcAttrFlags, flags)...)
	a = append(a, nlAttr(ipvsSvcAttrTimeout, u32(s.Timeout))...)
	a = append(a, nlAttr(ipvsSvcAttrNetmask, u32(s.Netmask))...)
	return nlAttr(ipvsCmdAttrService|unix.NLA_F_NESTED, a)
}

// encodeDest encodes d as IPVS_CMD_ATTR_DEST.
func encodeDest(d *moby.Destination) []byte {
	var a []byte
	a = append(a, nlAttr(ipvsDestAttrAddr, ipBytes(d.Address))...)
	a = append(a, nlAttr(ipvsDestAttrPort, binary.BigEndian.AppendUint16(nil, d.Port))...)
	a = append(a, nlAttr(ipvsDestAttrFwdMethod, u32(d.ConnectionFlags&fwdMask))...)
	a = append(a, nlAttr(ipvsDestAttrWeight, u32(uint32(d.Weight)))...)
	a = append(a, nlAttr(ipvsDestAttrUThresh, u32(d.UpperThreshold))...)
	a = append(a, nlAttr(ipvsDestAttrLThresh, u32(d.LowerThreshold))...)
	return nlAttr(ipvsCmdAttrDest|unix.NLA_F_NESTED, a)
}

// ipBytes is an address as IPVS takes it: 4 bytes for IPv4, 16 for IPv6.
func ipBytes(ip net.IP) []byte {
	if v4 := ip.To4(); v4 != nil {
		return v4
	}
	return ip.To16()
}

func u16(v uint16) []byte { return binary.NativeEndian.AppendUint16(nil, v) }
func u32(v uint32) []byte { return binary.NativeEndian.AppendUint32(nil, v) }
