package kernel

import (
	"errors"
	"fmt"
	"net"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// binding is one VIP-shaped entry the kernel reports for the VIP interface.
type binding struct {
	// Prefix is the address or route destination.
	Prefix netip.Prefix
	// Owned says it carries our protocol mark.
	Owned bool
	// Stale marks an owned entry in the wrong place (a device that was
	// re-created); it is removed and, if still wanted, bound again.
	Stale bool
}

// binder is one way of making VIPs local: addresses or local routes.
type binder interface {
	// list reports the bindings that matter on the interface: ours and
	// everyone else's VIP-shaped ones. It may return
	// netlink.ErrDumpInterrupted; the caller retries.
	list(ifindex int) ([]binding, error)
	// bind makes a VIP local; it fails when it already is.
	bind(ifindex int, p netip.Prefix) error
	// unbind removes one of our bindings; one that is gone already is fine.
	unbind(ifindex int, p netip.Prefix) error
	// verify checks VIPs just bound and undoes those that are not right.
	verify(ifindex int, added []netip.Prefix) error
}

// addrBinder binds VIPs as interface addresses marked with IFA_PROTO.
type addrBinder struct {
	k     addrKernel
	proto int
	iface string
}

// list implements binder.
func (b *addrBinder) list(ifindex int) ([]binding, error) {
	as, err := b.k.addrs(ifindex)
	if err != nil {
		return nil, err
	}
	out := make([]binding, 0, len(as))
	for _, a := range as {
		out = append(out, binding{Prefix: a.Prefix, Owned: a.Proto == b.proto})
	}
	return out, nil
}

// bind implements binder.
func (b *addrBinder) bind(ifindex int, p netip.Prefix) error {
	return b.k.addAddr(ifindex, b.mark(p))
}

// unbind implements binder.
func (b *addrBinder) unbind(ifindex int, p netip.Prefix) error {
	if err := b.k.delAddr(ifindex, p); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		return err
	}
	return nil
}

// mark returns the address to create for VIP prefix p: our protocol, nodad for
// IPv6 (a VIP exists on every director at once, so duplicate address detection
// would only delay or disable it), and a label for IPv4 when it fits.
func (b *addrBinder) mark(p netip.Prefix) ifAddr {
	a := ifAddr{Prefix: p, Proto: b.proto}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	} else if label := b.iface + ":vip"; len(label) < unix.IFNAMSIZ {
		a.Label = label
	}
	return a
}

// verify implements binder: it checks that the kernel kept the protocol mark.
// Kernels before 6.1 silently drop IFA_PROTO; without the mark we would take our
// own VIPs for foreign ones and never remove them, so the addresses are removed
// again and the error says why.
func (b *addrBinder) verify(ifindex int, added []netip.Prefix) error {
	have, err := retryDump("list addresses of "+b.iface, func() ([]ifAddr, error) {
		return b.k.addrs(ifindex)
	})
	if err != nil {
		return fmt.Errorf("verify the VIPs just bound: %w", err)
	}
	proto := map[netip.Prefix]int{}
	for _, a := range have {
		proto[a.Prefix] = a.Proto
	}
	var errs []error
	for _, p := range added {
		got, ok := proto[p]
		if !ok || got == b.proto {
			continue // gone again (someone removed it) or fine
		}
		err := fmt.Errorf("bind VIP %s: the kernel did not keep the address protocol mark (IFA_PROTO, Linux 6.1 or later needed; got %d, want %d), so the address was removed again; use the local-route binding on this kernel", p.Addr(), got, b.proto)
		if derr := b.k.delAddr(ifindex, p); derr != nil {
			err = fmt.Errorf("%w; removing it failed too, remove %s from %s by hand: %v", err, p, b.iface, derr)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// routeBinder binds VIPs as "local" routes in the kernel's local table, marked
// with the route protocol number.
type routeBinder struct {
	k     routeKernel
	proto int
}

// list implements binder: every local route of a host prefix in the local
// table, whatever its device (an address anywhere makes a VIP local already).
func (b *routeBinder) list(ifindex int) ([]binding, error) {
	filter := &netlink.Route{Table: unix.RT_TABLE_LOCAL}
	routes, err := b.k.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE)
	if err != nil {
		return nil, err
	}
	var out []binding
	for _, r := range routes {
		p, ok := routePrefix(r)
		if !ok || r.Table != unix.RT_TABLE_LOCAL || r.Type != unix.RTN_LOCAL || p.Bits() != p.Addr().BitLen() {
			continue
		}
		owned := int(r.Protocol) == b.proto
		out = append(out, binding{Prefix: p, Owned: owned, Stale: owned && r.LinkIndex != ifindex})
	}
	return out, nil
}

// bind implements binder.
func (b *routeBinder) bind(ifindex int, p netip.Prefix) error {
	return b.k.RouteAdd(b.route(ifindex, p))
}

// unbind implements binder; the protocol number in the request keeps the
// kernel from deleting anyone else's local route for the same address.
func (b *routeBinder) unbind(ifindex int, p netip.Prefix) error {
	r := b.route(ifindex, p)
	r.LinkIndex = 0 // a stale route points at a device that is gone
	if err := b.k.RouteDel(r); err != nil && !errors.Is(err, unix.ESRCH) {
		return err
	}
	return nil
}

// verify implements binder; the route protocol number is as old as the kernel.
func (b *routeBinder) verify(int, []netip.Prefix) error { return nil }

// route builds the local route that makes p local.
func (b *routeBinder) route(ifindex int, p netip.Prefix) *netlink.Route {
	r := &netlink.Route{
		Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		LinkIndex: ifindex,
		Table:     unix.RT_TABLE_LOCAL,
		Type:      unix.RTN_LOCAL,
		Protocol:  netlink.RouteProtocol(b.proto),
	}
	if p.Addr().Is4() {
		r.Scope = netlink.SCOPE_HOST
	}
	return r
}
