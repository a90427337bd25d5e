package kernel

import (
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// ifaProto is IFA_PROTO (include/uapi/linux/if_addr.h, Linux 6.1): the
// originator of an address. golang.org/x/sys does not name it yet.
const ifaProto = 11

// ifAddr is one interface address as far as VIPs cares.
type ifAddr struct {
	// Prefix is the local address with its prefix length.
	Prefix netip.Prefix
	// Proto is the IFA_PROTO value; 0 when the kernel reported none.
	Proto int
	// Label is the IPv4 address label ("" for IPv6).
	Label string
	// Flags are the IFA_F_* flags.
	Flags uint32
}

// addrKernel is the slice of the kernel's address API that VIPs uses. nlConn
// implements it over netlink; the unit tests use an in-memory kernel.
type addrKernel interface {
	// addrs dumps the addresses of one interface. It may return
	// netlink.ErrDumpInterrupted, and the caller retries.
	addrs(ifindex int) ([]ifAddr, error)
	// addAddr creates an address; it fails when the address exists.
	addAddr(ifindex int, a ifAddr) error
	// delAddr deletes an address.
	delAddr(ifindex int, p netip.Prefix) error
}

// linkKernel is the slice of the library's link API that VIPs and Advertiser
// use; *netlink.Handle satisfies it.
type linkKernel interface {
	LinkByName(name string) (netlink.Link, error)
	LinkAdd(link netlink.Link) error
	LinkSetUp(link netlink.Link) error
}

// request returns a netlink request bound to this namespace's raw socket.
func (c *nlConn) request(msgType, flags int) *nl.NetlinkRequest {
	req := nl.NewNetlinkRequest(msgType, flags)
	req.Sockets = map[int]*nl.SocketHandle{unix.NETLINK_ROUTE: c.sock}
	return req
}

// addrs implements addrKernel with an RTM_GETADDR dump.
func (c *nlConn) addrs(ifindex int) ([]ifAddr, error) {
	req := c.request(unix.RTM_GETADDR, unix.NLM_F_DUMP)
	req.AddData(nl.NewIfAddrmsg(unix.AF_UNSPEC))
	msgs, err := req.Execute(unix.NETLINK_ROUTE, unix.RTM_NEWADDR)
	if err != nil {
		return nil, err
	}
	var out []ifAddr
	for _, m := range msgs {
		a, index, err := parseIfAddr(m)
		if err != nil {
			return nil, err
		}
		if index == ifindex {
			out = append(out, a)
		}
	}
	return out, nil
}

// parseIfAddr decodes one RTM_NEWADDR message.
func parseIfAddr(m []byte) (ifAddr, int, error) {
	if len(m) < unix.SizeofIfAddrmsg {
		return ifAddr{}, 0, fmt.Errorf("short RTM_NEWADDR message (%d bytes)", len(m))
	}
	msg := nl.DeserializeIfAddrmsg(m)
	attrs, err := nl.ParseRouteAttr(m[msg.Len():])
	if err != nil {
		return ifAddr{}, 0, fmt.Errorf("parse RTM_NEWADDR attributes: %w", err)
	}
	a := ifAddr{Flags: uint32(msg.Flags)}
	var local, address []byte
	for _, attr := range attrs {
		switch attr.Attr.Type {
		case unix.IFA_LOCAL:
			local = attr.Value
		case unix.IFA_ADDRESS:
			address = attr.Value
		case unix.IFA_LABEL:
			a.Label = unix.ByteSliceToString(attr.Value)
		case unix.IFA_FLAGS:
			if len(attr.Value) >= 4 {
				a.Flags = nl.NativeEndian().Uint32(attr.Value)
			}
		case ifaProto:
			if len(attr.Value) >= 1 {
				a.Proto = int(attr.Value[0])
			}
		}
	}
	// IPv4 reports the local address in IFA_LOCAL (IFA_ADDRESS is the peer);
	// IPv6 reports only IFA_ADDRESS unless the address has a peer.
	raw := local
	if raw == nil {
		raw = address
	}
	ip, ok := netip.AddrFromSlice(raw)
	if !ok {
		return ifAddr{}, 0, fmt.Errorf("RTM_NEWADDR message without a valid address (%d bytes)", len(raw))
	}
	a.Prefix = netip.PrefixFrom(ip, int(msg.Prefixlen))
	return a, int(msg.Index), nil
}

// addAddr implements addrKernel with RTM_NEWADDR, carrying IFA_PROTO.
func (c *nlConn) addAddr(ifindex int, a ifAddr) error {
	req := c.request(unix.RTM_NEWADDR, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	family := unix.AF_INET
	if a.Prefix.Addr().Is6() {
		family = unix.AF_INET6
	}
	msg := nl.NewIfAddrmsg(family)
	msg.Index = uint32(ifindex)
	msg.Prefixlen = uint8(a.Prefix.Bits())
	req.AddData(msg)
	raw := a.Prefix.Addr().AsSlice()
	req.AddData(nl.NewRtAttr(unix.IFA_LOCAL, raw))
	req.AddData(nl.NewRtAttr(unix.IFA_ADDRESS, raw))
	if a.Flags != 0 {
		req.AddData(nl.NewRtAttr(unix.IFA_FLAGS, nl.Uint32Attr(a.Flags)))
	}
	if a.Label != "" && family == unix.AF_INET {
		req.AddData(nl.NewRtAttr(unix.IFA_LABEL, nl.ZeroTerminated(a.Label)))
	}
	req.AddData(nl.NewRtAttr(ifaProto, nl.Uint8Attr(uint8(a.Proto))))
	_, err := req.Execute(unix.NETLINK_ROUTE, 0)
	return err
}

// delAddr implements addrKernel with the library's AddrDel.
func (c *nlConn) delAddr(ifindex int, p netip.Prefix) error {
	return c.h.AddrDel(nil, &netlink.Addr{
		IPNet:     &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		LinkIndex: ifindex,
	})
}
