package kernel

import (
	"net"
	"net/netip"
	"slices"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// fakeKernel is an in-memory kernel for the unit tests: links, addresses and
// routes with the kernel's rules for duplicates and missing entries. It fails
// the test on operations the real kernel would reject outright.
type fakeKernel struct {
	t *testing.T
	// links by name.
	links map[string]*netlink.Device
	// dummy says whether the kernel has the dummy link type.
	dummy bool
	// addrTab holds the addresses by interface index.
	addrTab map[int][]ifAddr
	// dropProto simulates a kernel before 6.1 that ignores IFA_PROTO.
	dropProto bool
	// routes in every table.
	routes []netlink.Route
	// interrupts is how many of the next dumps report NLM_F_DUMP_INTR.
	interrupts int
	// dumps counts dump calls.
	dumps int
}

func newFakeKernel(t *testing.T) *fakeKernel {
	k := &fakeKernel{t: t, links: map[string]*netlink.Device{}, addrTab: map[int][]ifAddr{}}
	k.links["lo"] = &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "lo", Index: 1, Flags: net.FlagUp | net.FlagLoopback}}
	k.addrTab[1] = []ifAddr{
		{Prefix: netip.MustParsePrefix("127.0.0.1/8"), Label: "lo", Flags: unix.IFA_F_PERMANENT},
		{Prefix: netip.MustParsePrefix("::1/128"), Proto: 1, Flags: unix.IFA_F_PERMANENT},
	}
	return k
}

func (k *fakeKernel) interrupted() bool {
	k.dumps++
	if k.interrupts > 0 {
		k.interrupts--
		return true
	}
	return false
}

// LinkByName implements linkKernel.
func (k *fakeKernel) LinkByName(name string) (netlink.Link, error) {
	l, ok := k.links[name]
	if !ok {
		return nil, netlink.LinkNotFoundError{}
	}
	c := *l
	return &c, nil
}

// LinkAdd implements linkKernel; only dummy devices are supported.
func (k *fakeKernel) LinkAdd(link netlink.Link) error {
	d, ok := link.(*netlink.Dummy)
	if !ok {
		k.t.Fatalf("LinkAdd(%T): only dummy devices are expected", link)
	}
	if !k.dummy {
		return unix.EOPNOTSUPP
	}
	if _, exists := k.links[d.Name]; exists {
		return unix.EEXIST
	}
	k.links[d.Name] = &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: d.Name, Index: len(k.links) + 1}}
	return nil
}

// LinkSetUp implements linkKernel.
func (k *fakeKernel) LinkSetUp(link netlink.Link) error {
	l, ok := k.links[link.Attrs().Name]
	if !ok {
		return unix.ENODEV
	}
	l.Flags |= net.FlagUp
	return nil
}

// addrs implements addrKernel.
func (k *fakeKernel) addrs(ifindex int) ([]ifAddr, error) {
	if k.interrupted() {
		return nil, netlink.ErrDumpInterrupted
	}
	return slices.Clone(k.addrTab[ifindex]), nil
}

// addAddr implements addrKernel.
func (k *fakeKernel) addAddr(ifindex int, a ifAddr) error {
	if !a.Prefix.IsValid() || a.Prefix.Bits() != a.Prefix.Addr().BitLen() {
		k.t.Fatalf("addAddr(%v): VIPs must be host prefixes", a.Prefix)
	}
	for _, x := range k.addrTab[ifindex] {
		if x.Prefix == a.Prefix {
			return unix.EEXIST
		}
	}
	if k.dropProto {
		a.Proto = 0
	}
	if a.Prefix.Addr().Is6() {
		a.Label = ""
	}
	a.Flags |= unix.IFA_F_PERMANENT
	k.addrTab[ifindex] = append(k.addrTab[ifindex], a)
	return nil
}

// delAddr implements addrKernel.
func (k *fakeKernel) delAddr(ifindex int, p netip.Prefix) error {
	as := k.addrTab[ifindex]
	for i, x := range as {
		if x.Prefix == p {
			k.addrTab[ifindex] = slices.Delete(as, i, i+1)
			return nil
		}
	}
	return unix.EADDRNOTAVAIL
}

// RouteListFiltered implements routeKernel for the table and protocol filters.
func (k *fakeKernel) RouteListFiltered(family int, filter *netlink.Route, mask uint64) ([]netlink.Route, error) {
	if k.interrupted() {
		return nil, netlink.ErrDumpInterrupted
	}
	if family != netlink.FAMILY_ALL {
		k.t.Fatalf("RouteListFiltered(family %d): the advertiser lists both families", family)
	}
	var out []netlink.Route
	for _, r := range k.routes {
		if mask&netlink.RT_FILTER_TABLE != 0 && r.Table != filter.Table {
			continue
		}
		if mask&netlink.RT_FILTER_PROTOCOL != 0 && r.Protocol != filter.Protocol {
			continue
		}
		out = append(out, r)
	}
	return out, nil
}

// RouteAdd implements routeKernel with create-exclusive semantics.
func (k *fakeKernel) RouteAdd(r *netlink.Route) error {
	if r.Dst == nil || r.Table == 0 || r.LinkIndex == 0 {
		k.t.Fatalf("RouteAdd(%v): needs a destination, a table and a device", r)
	}
	for _, x := range k.routes {
		if x.Table == r.Table && x.Dst.String() == r.Dst.String() {
			return unix.EEXIST
		}
	}
	k.routes = append(k.routes, *r)
	return nil
}

// RouteDel implements routeKernel: destination and table must match, and the
// protocol too when given, as in the kernel.
func (k *fakeKernel) RouteDel(r *netlink.Route) error {
	for i, x := range k.routes {
		if x.Table == r.Table && x.Dst.String() == r.Dst.String() && (r.Protocol == 0 || r.Protocol == x.Protocol) {
			k.routes = slices.Delete(k.routes, i, i+1)
			return nil
		}
	}
	return unix.ESRCH
}
