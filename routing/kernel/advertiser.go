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

	"github.com/anycast-director/director/routing"
)

// AdvertiserOptions configures Advertiser.
type AdvertiserOptions struct {
	// Table is the routing table the VIP routes go to (config.Kernel.Table): a
	// dedicated table (1..252) that FRR imports with "ip import-table", or the
	// main table (254) that FRR reads as kernel routes. See docs/ospf.md.
	Table int
	// Protocol is the route protocol number that marks our routes
	// (config.Kernel.Protocol, 5..255).
	Protocol int
	// Interface is the VIP interface (config.Director.VIPInterface): the routes
	// point at it, so where the routing daemon installs them into a FIB they
	// deliver locally, like the bound VIP itself.
	Interface string
	// Namespace is the path of the network namespace file to work in
	// ("/run/netns/NAME"); "" means the process's own namespace.
	Namespace string
}

// routeKernel is the slice of the library's route API that Advertiser uses;
// *netlink.Handle satisfies it.
type routeKernel interface {
	RouteListFiltered(family int, filter *netlink.Route, filterMask uint64) ([]netlink.Route, error)
	RouteAdd(route *netlink.Route) error
	RouteDel(route *netlink.Route) error
}

// Advertiser is the routing.Advertiser for OSPF through a local routing daemon.
// A VIP is advertised by a host route (VIP/32 or VIP/128 dev <VIP interface>)
// in the configured table with the configured protocol number, which the local
// FRR or BIRD redistributes into OSPF, and withdrawn by deleting that route.
// It never binds or unbinds the VIP itself (that is VIPs' job), so a withdrawn
// VIP keeps being served while the routers move traffic away. Only routes of
// its table with its protocol number are ever changed. Safe for concurrent use.
type Advertiser struct {
	log    *slog.Logger
	opts   AdvertiserOptions
	links  linkKernel
	routes routeKernel
	close  func()
	// closeOnce makes Close safe to call twice.
	closeOnce sync.Once

	mu sync.Mutex
}

var _ routing.Advertiser = (*Advertiser)(nil)

// NewAdvertiser opens netlink in the configured namespace. The VIP interface
// must exist by the first Set (VIPs creates it).
func NewAdvertiser(log *slog.Logger, opts AdvertiserOptions) (*Advertiser, error) {
	if err := checkProtocol(opts.Protocol); err != nil {
		return nil, err
	}
	if err := checkTable(opts.Table); err != nil {
		return nil, err
	}
	if opts.Interface == "" {
		return nil, errors.New("no VIP interface given for the VIP routes: set director.vip_interface")
	}
	conn, err := openNetlink(opts.Namespace)
	if err != nil {
		return nil, err
	}
	return newAdvertiser(log, opts, conn.h, conn.h, conn.close), nil
}

// newAdvertiser wires an Advertiser to its kernel endpoints; the tests pass
// in-memory ones.
func newAdvertiser(log *slog.Logger, opts AdvertiserOptions, links linkKernel, routes routeKernel, closeFn func()) *Advertiser {
	return &Advertiser{
		log:    log.With("table", opts.Table, "protocol", opts.Protocol),
		opts:   opts,
		links:  links,
		routes: routes,
		close:  closeFn,
	}
}

// Close releases the netlink handles. Advertised routes stay: stopping the
// process is not a withdraw (call Set with an empty set for that), and the next
// process adopts them.
func (a *Advertiser) Close() error {
	a.closeOnce.Do(func() {
		if a.close != nil {
			a.close()
		}
	})
	return nil
}

// Peers returns nothing: the OSPF adjacencies belong to the local routing
// daemon, not to directord.
func (a *Advertiser) Peers() []routing.PeerStatus { return nil }

// Set advertises exactly the given VIPs: it adds a route for each missing one
// and deletes our routes for the others. BGP attributes (communities, MED,
// prepends, GracefulShutdown) have no meaning here and are ignored: OSPF has no
// way to ask routers to prefer other directors, so a graceful shutdown keeps the
// route until the announcer's withdraw. Every VIP is attempted; the error joins
// the failures.
func (a *Advertiser) Set(ctx context.Context, ads []routing.Advertisement) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	want, errs := wantedPrefixes(ads)
	if err := ctx.Err(); err != nil {
		return errors.Join(append(errs, err)...)
	}
	link, err := a.links.LinkByName(a.opts.Interface)
	if err != nil {
		return errors.Join(append(errs, fmt.Errorf("look up VIP interface %s for the VIP routes: %w", a.opts.Interface, err))...)
	}
	ifindex := link.Attrs().Index
	have, err := a.list()
	if err != nil {
		return errors.Join(append(errs, err)...)
	}
	ok, err := a.withdrawOthers(ctx, have, want, ifindex, &errs)
	if err == nil {
		err = a.addMissing(ctx, want, ok, ifindex, &errs)
	}
	return errors.Join(append(errs, err)...)
}

// wantedPrefixes checks the advertisements and returns their host prefixes.
func wantedPrefixes(ads []routing.Advertisement) (map[netip.Prefix]bool, []error) {
	want := map[netip.Prefix]bool{}
	var errs []error
	for _, ad := range ads {
		p, err := advertisedPrefix(ad.Prefix)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		want[p] = true
	}
	return want, errs
}

// withdrawOthers deletes our routes that are not wanted, or that point
// elsewhere than the VIP interface (it was re-created), and returns the
// wanted prefixes whose route is in place. Failures go to errs; the error is
// the context's.
func (a *Advertiser) withdrawOthers(ctx context.Context, have []netlink.Route, want map[netip.Prefix]bool, ifindex int, errs *[]error) (map[netip.Prefix]bool, error) {
	ok := map[netip.Prefix]bool{}
	for _, r := range have {
		p, valid := routePrefix(r)
		if valid && want[p] && r.LinkIndex == ifindex && len(r.MultiPath) == 0 && !ok[p] {
			ok[p] = true
			continue
		}
		if err := ctx.Err(); err != nil {
			return ok, err
		}
		del := r
		if err := a.routes.RouteDel(&del); err != nil && !errors.Is(err, unix.ESRCH) {
			*errs = append(*errs, fmt.Errorf("withdraw VIP route %s from table %d: %w", r.Dst, a.opts.Table, err))
			continue
		}
		if valid && !want[p] {
			a.log.Info("withdrew VIP", "vip", p.Addr())
		}
	}
	return ok, nil
}

// addMissing adds a route for every wanted prefix not in place (ok).
// Failures go to errs; the error is the context's.
func (a *Advertiser) addMissing(ctx context.Context, want, ok map[netip.Prefix]bool, ifindex int, errs *[]error) error {
	for _, p := range sortedPrefixes(want) {
		if ok[p] {
			continue
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if err := a.routes.RouteAdd(a.route(p, ifindex)); err != nil {
			if errors.Is(err, unix.EEXIST) {
				err = fmt.Errorf("%w: a route for it that is not ours (another protocol number) exists in table %d; remove it or pick a dedicated table", err, a.opts.Table)
			}
			*errs = append(*errs, fmt.Errorf("advertise VIP %s (route in table %d): %w", p.Addr(), a.opts.Table, err))
			continue
		}
		a.log.Info("advertised VIP", "vip", p.Addr())
	}
	return nil
}

// Advertised returns the VIPs that have our route in the kernel
// (routing.Advertiser), sorted; only the prefix is set.
func (a *Advertiser) Advertised(ctx context.Context) ([]routing.Advertisement, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	have, err := a.list()
	if err != nil {
		return nil, err
	}
	var ps []netip.Prefix
	for _, r := range have {
		if p, ok := routePrefix(r); ok {
			ps = append(ps, p)
		}
	}
	slices.SortFunc(ps, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr()) })
	ps = slices.Compact(ps)
	out := make([]routing.Advertisement, len(ps))
	for i, p := range ps {
		out[i] = routing.Advertisement{Prefix: p}
	}
	return out, nil
}

// list dumps our routes: both families, our table, our protocol.
func (a *Advertiser) list() ([]netlink.Route, error) {
	filter := &netlink.Route{Table: a.opts.Table, Protocol: netlink.RouteProtocol(a.opts.Protocol)}
	what := fmt.Sprintf("list VIP routes in table %d", a.opts.Table)
	routes, err := retryDump(what, func() ([]netlink.Route, error) {
		return a.routes.RouteListFiltered(netlink.FAMILY_ALL, filter, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	})
	if err != nil {
		return nil, err
	}
	// The kernel may ignore the filter; never act on someone else's route.
	mine := routes[:0]
	for _, r := range routes {
		if r.Table == a.opts.Table && int(r.Protocol) == a.opts.Protocol {
			mine = append(mine, r)
		}
	}
	return mine, nil
}

// route builds the host route that advertises p.
func (a *Advertiser) route(p netip.Prefix, ifindex int) *netlink.Route {
	r := &netlink.Route{
		Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		LinkIndex: ifindex,
		Table:     a.opts.Table,
		Protocol:  netlink.RouteProtocol(a.opts.Protocol),
		Type:      unix.RTN_UNICAST,
	}
	if p.Addr().Is4() {
		// What `ip route add VIP/32 dev IF` creates: a direct route.
		r.Scope = netlink.SCOPE_LINK
	}
	return r
}

// advertisedPrefix checks that an advertisement is a VIP host prefix.
func advertisedPrefix(p netip.Prefix) (netip.Prefix, error) {
	if !p.IsValid() {
		return netip.Prefix{}, errors.New("advertisement without a prefix")
	}
	hp, err := hostPrefix(p.Addr())
	if err != nil {
		return netip.Prefix{}, err
	}
	if p.Bits() != hp.Bits() {
		return netip.Prefix{}, fmt.Errorf("advertisement %s is not a host prefix (/32 or /128): only VIPs are advertised", p)
	}
	return hp, nil
}

// routePrefix returns the destination of a route as a prefix.
func routePrefix(r netlink.Route) (netip.Prefix, bool) {
	if r.Dst == nil {
		return netip.Prefix{}, false
	}
	ip, ok := netip.AddrFromSlice(r.Dst.IP)
	if !ok {
		return netip.Prefix{}, false
	}
	ones, _ := r.Dst.Mask.Size()
	return netip.PrefixFrom(ip.Unmap(), ones), true
}
