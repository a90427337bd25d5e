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

	"github.com/anycast-director/director/internal/logmany"
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
	// Binding is how a VIP is made local: an address (the default) or a local
	// route. Use BindLocalRoute with announce: kernel and FRR (docs/ospf.md).
	Binding Binding
	// OnRepair, when set, is called (with the VIPs locked: it must not call
	// them) for every VIP bound again because it disappeared behind this
	// value's back after Set had bound or adopted it. Each one is also
	// logged at warning level.
	OnRepair func(vip netip.Addr)
}

// Binding is how VIPs makes a VIP local to the director.
type Binding int

const (
	// BindAddress adds the VIP as an address (/32, /128 nodad) to the VIP
	// interface, marked with IFA_PROTO. Local services can bind to it like to
	// any address.
	BindAddress Binding = iota
	// BindLocalRoute adds a "local" route for the VIP to the kernel's local
	// table (what `ip route add local VIP dev lo table local` does), marked
	// with the route protocol number. The kernel delivers the VIP's packets
	// locally (to IPVS) exactly as for an address, but the VIP is no interface
	// address, so FRR's zebra does not turn it into a connected route, which
	// would always beat the Advertiser's route and keep it from being
	// redistributed (FRR 8.4). IPv4 sockets can bind to such a VIP; IPv6
	// sockets need IP_FREEBIND or net.ipv6.ip_nonlocal_bind=1.
	BindLocalRoute
)

// shape says what a VIP bound with b is, for logs: "an address", "a local
// route".
func (b Binding) shape() string {
	if b == BindLocalRoute {
		return "a local route"
	}
	return "an address"
}

// String returns the configuration spelling of b.
func (b Binding) String() string {
	switch b {
	case BindAddress:
		return "address"
	case BindLocalRoute:
		return "local-route"
	}
	return "unknown"
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
	bind  binder
	close func()
	// closeOnce makes Close safe to call twice.
	closeOnce sync.Once

	mu sync.Mutex
	// foreignWarned remembers the wanted VIPs already found bound by someone
	// else, so the warning is logged once and not on every resync.
	foreignWarned map[netip.Addr]bool
	// held are the VIPs the last Set left bound with our mark: one of them
	// missing at the next Set was removed behind our back (a repair).
	held map[netip.Prefix]bool
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
	var b binder = &addrBinder{k: conn, proto: opts.Protocol, iface: opts.Interface}
	switch opts.Binding {
	case BindAddress:
	case BindLocalRoute:
		b = &routeBinder{k: conn.h, proto: opts.Protocol}
	default:
		conn.close()
		return nil, fmt.Errorf("unknown VIP binding %d", opts.Binding)
	}
	v := newVIPs(log, opts, conn.h, b, conn.close)
	if err := v.prepareInterface(); err != nil {
		conn.close()
		return nil, err
	}
	return v, nil
}

// newVIPs wires a VIPs to its kernel endpoints; the tests pass in-memory ones.
func newVIPs(log *slog.Logger, opts VIPOptions, links linkKernel, b binder, closeFn func()) *VIPs {
	return &VIPs{
		log:           log.With("interface", opts.Interface, "binding", opts.Binding.String()),
		opts:          opts,
		links:         links,
		bind:          b,
		close:         closeFn,
		foreignWarned: map[netip.Addr]bool{},
		held:          map[netip.Prefix]bool{},
	}
}

// Close releases the netlink handles; bound VIPs stay (they are adopted by the
// next process).
func (v *VIPs) Close() error {
	v.closeOnce.Do(func() {
		if v.close != nil {
			v.close()
		}
	})
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
	cur := classify(have)
	// Remove first, so a VIP we own in the wrong shape (prefix length, stale
	// device) is re-added in the right one.
	if err := v.unbindUnwanted(ctx, ifindex, cur, want, &errs); err != nil {
		return errors.Join(append(errs, err)...)
	}
	added, err := v.bindMissing(ctx, ifindex, cur, want, &errs)
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	for a := range v.foreignWarned {
		if !cur.foreign[a] {
			delete(v.foreignWarned, a)
		}
	}
	if len(added) > 0 {
		if err := v.bind.verify(ifindex, added); err != nil {
			errs = append(errs, err)
		}
	}
	v.remember(cur, added, want)
	return errors.Join(errs...)
}

// remember keeps which wanted VIPs are bound with our mark after a Set.
func (v *VIPs) remember(cur bound, added []netip.Prefix, want map[netip.Prefix]bool) {
	clear(v.held)
	for p := range cur.owned {
		if want[p] {
			v.held[p] = true
		}
	}
	for _, p := range added {
		v.held[p] = true
	}
}

// repaired reports a VIP bound again after it disappeared behind our back.
func (v *VIPs) repaired(p netip.Prefix) {
	v.log.Warn("kernel state changed behind directord's back; repaired", "kind", "vip_address", "subject", p.Addr().String(),
		"reason", fmt.Sprintf("VIP %s was no longer %s on %s: bound again", p.Addr(), v.opts.Binding.shape(), v.opts.Interface))
	if v.opts.OnRepair != nil {
		v.opts.OnRepair(p.Addr())
	}
}

// bound is the VIP interface's bindings by owner.
type bound struct {
	owned   map[netip.Prefix]bool // ours, in the right shape
	stale   []netip.Prefix        // ours, in a shape to re-create
	foreign map[netip.Addr]bool   // someone else's
}

// classify sorts the listed bindings by owner.
func classify(have []binding) bound {
	b := bound{owned: map[netip.Prefix]bool{}, foreign: map[netip.Addr]bool{}}
	for _, x := range have {
		switch {
		case x.Owned && x.Stale:
			b.stale = append(b.stale, x.Prefix)
		case x.Owned:
			b.owned[x.Prefix] = true
		default:
			b.foreign[x.Prefix.Addr()] = true
		}
	}
	return b
}

// unbindUnwanted removes our stale bindings and those no longer wanted.
// Failures go to errs; the error is the context's.
func (v *VIPs) unbindUnwanted(ctx context.Context, ifindex int, cur bound, want map[netip.Prefix]bool, errs *[]error) error {
	remove := cur.stale
	for _, p := range sortedPrefixes(cur.owned) {
		if !want[p] {
			remove = append(remove, p)
		}
	}
	var unbound []netip.Prefix
	defer func() { v.logVIPs("unbound VIP", unbound) }()
	for _, p := range remove {
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := v.bind.unbind(ifindex, p); err != nil {
			*errs = append(*errs, fmt.Errorf("unbind VIP %s (%s on %s): %w", p.Addr(), v.opts.Binding, v.opts.Interface, err))
			continue
		}
		if !want[p] {
			unbound = append(unbound, p)
		}
	}
	return nil
}

// logVIPs logs what one Set did (msg: "bound VIP" or "unbound VIP") to ps,
// in one line when there are many (logmany).
func (v *VIPs) logVIPs(msg string, ps []netip.Prefix) {
	addrs := make([]string, len(ps))
	for i, p := range ps {
		addrs[i] = p.Addr().String()
	}
	logmany.Log(v.log, msg, msg+"s", "vip", addrs, "")
}

// bindMissing binds the wanted VIPs that are not bound yet, using (with a
// warning, once) a VIP someone else made local already, and returns what it
// added. Failures go to errs; the error is the context's.
func (v *VIPs) bindMissing(ctx context.Context, ifindex int, cur bound, want map[netip.Prefix]bool, errs *[]error) ([]netip.Prefix, error) {
	var added, logged []netip.Prefix
	defer func() { v.logVIPs("bound VIP", logged) }()
	for _, p := range sortedPrefixes(want) {
		if cur.owned[p] {
			continue
		}
		if cur.foreign[p.Addr()] {
			if !v.foreignWarned[p.Addr()] {
				v.foreignWarned[p.Addr()] = true
				v.log.Warn("VIP is already local through someone else's address or route; using it, but never removing it",
					"vip", p.Addr(), "reason", "no directord protocol mark")
			}
			continue
		}
		if err := ctx.Err(); err != nil {
			return added, err
		}
		if err := v.bind.bind(ifindex, p); err != nil {
			*errs = append(*errs, fmt.Errorf("bind VIP %s (%s on %s): %w", p.Addr(), v.opts.Binding, v.opts.Interface, err))
			continue
		}
		added = append(added, p)
		if v.held[p] {
			v.repaired(p)
			continue
		}
		logged = append(logged, p)
	}
	return added, nil
}

// Owned returns the VIPs that carry our mark on the VIP interface, sorted: what
// this value (or an earlier process) bound and has not removed.
func (v *VIPs) Owned(ctx context.Context) ([]netip.Addr, error) {
	_, have, err := v.dump(ctx)
	if err != nil {
		return nil, err
	}
	var out []netip.Addr
	for _, b := range have {
		if b.Owned && !b.Stale {
			out = append(out, b.Prefix.Addr())
		}
	}
	slices.SortFunc(out, netip.Addr.Compare)
	return out, nil
}

// dump resolves the interface (it may have been re-created since the last pass)
// and lists the VIP bindings.
func (v *VIPs) dump(ctx context.Context) (int, []binding, error) {
	if err := ctx.Err(); err != nil {
		return 0, nil, err
	}
	link, err := v.links.LinkByName(v.opts.Interface)
	if err != nil {
		return 0, nil, fmt.Errorf("look up VIP interface %s: %w (was it deleted? restart directord to re-create it)", v.opts.Interface, err)
	}
	ifindex := link.Attrs().Index
	have, err := retryDump("list the VIPs bound on "+v.opts.Interface, func() ([]binding, error) {
		return v.bind.list(ifindex)
	})
	return ifindex, have, err
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
