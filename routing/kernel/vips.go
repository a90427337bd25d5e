package kernel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// VIPOptions configures VIPs.
type VIPOptions struct {
	// Interface is the device VIPs are bound to (config.Director.VIPInterface).
	// A missing device is created as a dummy device.
	Interface string
	// Protocol is the IFA_PROTO value that marks our addresses
	// (config.Kernel.Protocol, 5..255).
	Protocol int
	// Namespace is the path of the network namespace file to work in
	// ("/run/netns/NAME"); "" means the process's own namespace.
	Namespace string
}

// VIPs binds VIP addresses to the local VIP interface as a full set. It only
// adds, removes and reports addresses that carry its IFA_PROTO mark, so
// 127.0.0.1/8, ::1 and an operator's addresses on the same device are never
// touched, and addresses bound by an earlier process are adopted. Safe for
// concurrent use.
type VIPs struct {
	log   *slog.Logger
	opts  VIPOptions
	links linkKernel
	addrs addrKernel
	close func()

	mu sync.Mutex
	// foreignWarned remembers the wanted VIPs already found bound by someone
	// else, so the warning is logged once and not on every resync.
	foreignWarned map[netip.Addr]bool
}

// NewVIPs opens netlink in the configured namespace and prepares the VIP
// interface: an existing device is used as it is (and brought up if it is
// down); a missing one is created as a dummy device. Nothing is bound until Set.
func NewVIPs(log *slog.Logger, opts VIPOptions) (*VIPs, error) {
	if err := checkProtocol(opts.Protocol); err != nil {
		return nil, err
	}
	if opts.Interface == "" {
		return nil, errors.New("no VIP interface given: set director.vip_interface (lo, or a dummy device name)")
	}
	conn, err := openNetlink(opts.Namespace)
	if err != nil {
		return nil, err
	}
	v := newVIPs(log, opts, conn.h, conn, conn.close)
	if err := v.prepareInterface(); err != nil {
		conn.close()
		return nil, err
	}
	return v, nil
}

// newVIPs wires a VIPs to its kernel endpoints; the tests pass in-memory ones.
func newVIPs(log *slog.Logger, opts VIPOptions, links linkKernel, addrs addrKernel, closeFn func()) *VIPs {
	return &VIPs{
		log:           log.With("interface", opts.Interface),
		opts:          opts,
		links:         links,
		addrs:         addrs,
		close:         closeFn,
		foreignWarned: map[netip.Addr]bool{},
	}
}

// Close releases the netlink handles; bound VIPs stay (they are adopted by the
// next process).
func (v *VIPs) Close() error {
	if v.close != nil {
		v.close()
	}
	return nil
}

// prepareInterface makes sure the VIP interface exists and is up.
func (v *VIPs) prepareInterface() error {
	name := v.opts.Interface
	link, err := v.links.LinkByName(name)
	if err != nil {
		if !isLinkNotFound(err) {
			return fmt.Errorf("look up VIP interface %s: %w", name, err)
		}
		link, err = v.createDummy(name)
		if err != nil {
			return err
		}
	}
	if link.Attrs().Flags&net.FlagUp == 0 {
		if err := v.links.LinkSetUp(link); err != nil {
			return fmt.Errorf("bring VIP interface %s up: %w", name, err)
		}
		v.log.Info("brought VIP interface up")
	}
	return nil
}

// createDummy creates the missing VIP interface as a dummy device.
func (v *VIPs) createDummy(name string) (netlink.Link, error) {
	err := v.links.LinkAdd(&netlink.Dummy{LinkAttrs: netlink.LinkAttrs{Name: name}})
	if errors.Is(err, unix.EOPNOTSUPP) {
		return nil, fmt.Errorf("VIP interface %s does not exist and this kernel has no dummy device support (CONFIG_DUMMY) to create it: set director.vip_interface to lo, or load the dummy module: %w", name, err)
	}
	if err != nil {
		return nil, fmt.Errorf("VIP interface %s does not exist and creating it as a dummy device failed: %w", name, err)
	}
	link, err := v.links.LinkByName(name)
	if err != nil {
		return nil, fmt.Errorf("look up the dummy device %s just created: %w", name, err)
	}
	v.log.Info("created dummy VIP interface")
	return link, nil
}

// Set binds exactly the given VIPs: it adds the missing ones, removes those it
// bound earlier (in this process or a previous one) that are no longer wanted,
// and leaves every address without its mark alone. A wanted VIP already bound by
// someone else counts as bound and stays foreign. Every VIP is attempted; the
// error joins the failures, and the caller retries with the whole set.
func (v *VIPs) Set(ctx context.Context, vips []netip.Addr) error {
	v.mu.Lock()
	defer v.mu.Unlock()

	want := map[netip.Prefix]bool{}
	var errs []error
	for _, a := range vips {
		p, err := hostPrefix(a)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		want[p] = true
	}
	ifindex, have, err := v.dump(ctx)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}

	owned := map[netip.Prefix]bool{}
	foreign := map[netip.Addr]bool{}
	for _, a := range have {
		if a.Proto == v.opts.Protocol {
			owned[a.Prefix] = true
		} else {
			foreign[a.Prefix.Addr()] = true
		}
	}

	// Remove first, so a VIP we own with the wrong prefix length is re-added
	// with the right one.
	for _, p := range sortedPrefixes(owned) {
		if want[p] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := v.addrs.delAddr(ifindex, p); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
			errs = append(errs, fmt.Errorf("unbind VIP %s from %s: %w", p.Addr(), v.opts.Interface, err))
			continue
		}
		v.log.Info("unbound VIP", "vip", p.Addr())
	}

	var added []netip.Prefix
	for _, p := range sortedPrefixes(want) {
		if owned[p] {
			continue
		}
		if foreign[p.Addr()] {
			if !v.foreignWarned[p.Addr()] {
				v.foreignWarned[p.Addr()] = true
				v.log.Warn("VIP is already bound by someone else; using it, but never removing it",
					"vip", p.Addr(), "reason", "address without directord's protocol mark")
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := v.addrs.addAddr(ifindex, v.mark(p)); err != nil {
			errs = append(errs, fmt.Errorf("bind VIP %s to %s: %w", p.Addr(), v.opts.Interface, err))
			continue
		}
		added = append(added, p)
		v.log.Info("bound VIP", "vip", p.Addr())
	}
	for a := range v.foreignWarned {
		if !foreign[a] {
			delete(v.foreignWarned, a)
		}
	}
	if len(added) > 0 {
		if err := v.verifyMarks(ifindex, added); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Owned returns the VIPs that carry our mark on the VIP interface, sorted: what
// this value (or an earlier process) bound and has not removed.
func (v *VIPs) Owned(ctx context.Context) ([]netip.Addr, error) {
	_, have, err := v.dump(ctx)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, a := range have {
		if a.Proto == v.opts.Protocol {
			out = append(out, a.Prefix.Addr())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// dump resolves the interface (it may have been re-created since the last pass)
// and lists its addresses.
func (v *VIPs) dump(ctx context.Context) (int, []ifAddr, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	link, err := v.links.LinkByName(v.opts.Interface)
	if err != nil {
		return 0, nil, fmt.Errorf("look up VIP interface %s: %w (was it deleted? restart directord to re-create it)", v.opts.Interface, err)
	}
	ifindex := link.Attrs().Index
	have, err := retryDump("list addresses of "+v.opts.Interface, func() ([]ifAddr, error) {
		return v.addrs.addrs(ifindex)
	})
	return ifindex, have, err
}

// mark returns the address to create for VIP prefix p: our protocol, nodad for
// IPv6 (a VIP exists on every director at once, so duplicate address detection
// would only delay or disable it), and a label for IPv4 when it fits.
func (v *VIPs) mark(p netip.Prefix) ifAddr {
	a := ifAddr{Prefix: p, Proto: v.opts.Protocol}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	} else if label := v.opts.Interface + ":vip"; len(label) < unix.IFNAMSIZ {
		a.Label = label
	}
	return a
}

// verifyMarks checks that the kernel kept the protocol mark on the addresses
// just added. Kernels before 6.1 silently drop IFA_PROTO; without the mark we
// would take our own VIPs for foreign ones and never remove them, so the
// addresses are removed again and the error says why.
func (v *VIPs) verifyMarks(ifindex int, added []netip.Prefix) error {
	have, err := retryDump("list addresses of "+v.opts.Interface, func() ([]ifAddr, error) {
		return v.addrs.addrs(ifindex)
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
		if !ok || got == v.opts.Protocol {
			continue // gone again (someone removed it) or fine
		}
		err := fmt.Errorf("bind VIP %s: the kernel did not keep the address protocol mark (IFA_PROTO, Linux 6.1 or later needed; got %d, want %d), so the address was removed again", p.Addr(), got, v.opts.Protocol)
		if derr := v.addrs.delAddr(ifindex, p); derr != nil {
			err = fmt.Errorf("%w; removing it failed too, remove %s from %s by hand: %v", err, p, v.opts.Interface, derr)
		}
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// hostPrefix turns a VIP into its host prefix (/32 or /128).
func hostPrefix(a netip.Addr) (netip.Prefix, error) {
	if !a.IsValid() {
		return netip.Prefix{}, errors.New("invalid VIP (zero address)")
	}
	a = a.Unmap()
	if a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("VIP %s has a zone; VIPs are global addresses", a)
	}
	if a.IsUnspecified() || a.IsLoopback() || a.IsMulticast() || a.IsLinkLocalUnicast() {
		return netip.Prefix{}, fmt.Errorf("VIP %s is not a unicast global address", a)
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// sortedPrefixes returns the keys of a set in address order, so operations and
// logs come in a stable order.
func sortedPrefixes(set map[netip.Prefix]bool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}

// isLinkNotFound reports whether err means "no such device".
func isLinkNotFound(err error) bool {
	var nf netlink.LinkNotFoundError
	return errors.As(err, &nf) || errors.Is(err, unix.ENODEV)
}
