package bgp

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/anycast-director/director/routing"
)

// maxPrepend bounds ASPathPrepend: longer paths are never useful to steer
// traffic and some routers drop them.
const maxPrepend = 16

// ErrNotAllowed marks advertisements for prefixes that are not in the allowed
// set (SetAllowed); the speaker refuses to put them into its RIB.
var ErrNotAllowed = errors.New("prefix is not an allowed VIP")

// route is the canonical form of an Advertisement: communities sorted and
// de-duplicated, GRACEFUL_SHUTDOWN folded into the community list, so two
// advertisements that produce the same UPDATE compare equal.
type route struct {
	prefix      netip.Prefix
	communities []uint32
	large       [][3]uint32
	med         uint32
	hasMED      bool
	prepend     int
}

// newRoute validates ad and returns its canonical form.
func newRoute(ad routing.Advertisement) (route, error) {
	if !ad.Prefix.IsValid() {
		return route{}, fmt.Errorf("advertisement has an invalid prefix %v: give the VIP as a /32 or /128", ad.Prefix)
	}
	if ad.ASPathPrepend < 0 || ad.ASPathPrepend > maxPrepend {
		return route{}, fmt.Errorf("%s: as-path prepend %d is out of range: use 0 to %d", ad.Prefix, ad.ASPathPrepend, maxPrepend)
	}
	r := route{prefix: ad.Prefix.Masked(), prepend: ad.ASPathPrepend}
	r.communities = slices.Clone(ad.Communities)
	if ad.GracefulShutdown {
		r.communities = append(r.communities, routing.GracefulShutdownCommunity)
	}
	slices.Sort(r.communities)
	r.communities = slices.Compact(r.communities)
	r.large = slices.Clone(ad.LargeCommunities)
	slices.SortFunc(r.large, func(a, b [3]uint32) int {
		return cmp.Or(cmp.Compare(a[0], b[0]), cmp.Compare(a[1], b[1]), cmp.Compare(a[2], b[2]))
	})
	r.large = slices.Compact(r.large)
	if ad.MED != nil {
		r.med, r.hasMED = *ad.MED, true
	}
	return r, nil
}

// advertisement turns r back into the Advertisement it came from (canonical:
// communities sorted, GRACEFUL_SHUTDOWN as the flag).
func (r route) advertisement() routing.Advertisement {
	ad := routing.Advertisement{Prefix: r.prefix, ASPathPrepend: r.prepend}
	for _, c := range r.communities {
		if c == routing.GracefulShutdownCommunity {
			ad.GracefulShutdown = true
			continue
		}
		ad.Communities = append(ad.Communities, c)
	}
	ad.LargeCommunities = slices.Clone(r.large)
	if r.hasMED {
		med := r.med
		ad.MED = &med
	}
	return ad
}

// equal reports whether r and o would be sent as the same UPDATE.
func (r route) equal(o route) bool {
	return r.prefix == o.prefix && r.prepend == o.prepend && r.hasMED == o.hasMED && r.med == o.med &&
		slices.Equal(r.communities, o.communities) && slices.Equal(r.large, o.large)
}

// family returns the GoBGP address family of the route.
func (r route) family() bgp.Family {
	if r.prefix.Addr().Is4() {
		return bgp.RF_IPv4_UC
	}
	return bgp.RF_IPv6_UC
}

// path builds the GoBGP path for r, originated by asn. The next hop is left
// unspecified (0.0.0.0 or ::): GoBGP then sends the local address of each
// session, which is "next hop self" for both eBGP and iBGP.
func (r route) path(asn uint32, withdraw bool) (*apiutil.Path, error) {
	nlri, err := bgp.NewIPAddrPrefix(r.prefix)
	if err != nil {
		return nil, fmt.Errorf("build NLRI for %s: %w", r.prefix, err)
	}
	p := &apiutil.Path{Family: r.family(), Nlri: nlri, Withdrawal: withdraw, Age: time.Now().Unix()}
	if withdraw {
		return p, nil
	}
	var segments []bgp.AsPathParamInterface
	if r.prepend > 0 {
		segments = []bgp.AsPathParamInterface{bgp.NewAs4PathParam(bgp.BGP_ASPATH_ATTR_TYPE_SEQ, slices.Repeat([]uint32{asn}, r.prepend))}
	}
	attrs := []bgp.PathAttributeInterface{
		bgp.NewPathAttributeOrigin(bgp.BGP_ORIGIN_ATTR_TYPE_IGP),
		bgp.NewPathAttributeAsPath(segments),
	}
	if r.family() == bgp.RF_IPv4_UC {
		nh, err := bgp.NewPathAttributeNextHop(netip.IPv4Unspecified())
		if err != nil {
			return nil, fmt.Errorf("build next hop for %s: %w", r.prefix, err)
		}
		attrs = append(attrs, nh)
	} else {
		mp, err := bgp.NewPathAttributeMpReachNLRI(bgp.RF_IPv6_UC, []bgp.PathNLRI{{NLRI: nlri}}, netip.IPv6Unspecified())
		if err != nil {
			return nil, fmt.Errorf("build next hop for %s: %w", r.prefix, err)
		}
		attrs = append(attrs, mp)
	}
	if r.hasMED {
		attrs = append(attrs, bgp.NewPathAttributeMultiExitDisc(r.med))
	}
	if len(r.communities) > 0 {
		attrs = append(attrs, bgp.NewPathAttributeCommunities(r.communities))
	}
	if len(r.large) > 0 {
		lcs := make([]*bgp.LargeCommunity, len(r.large))
		for i, l := range r.large {
			lcs[i] = bgp.NewLargeCommunity(l[0], l[1], l[2])
		}
		attrs = append(attrs, bgp.NewPathAttributeLargeCommunities(lcs))
	}
	p.Attrs = attrs
	return p, nil
}

// ribChange is the difference between the routes last handed to GoBGP and the
// desired ones.
type ribChange struct {
	// announce holds new routes and routes whose attributes changed (an
	// UPDATE for the same prefix replaces the old one).
	announce []route
	// withdraw holds prefixes that are no longer desired.
	withdraw []route
}

// empty reports whether nothing needs to be sent.
func (c ribChange) empty() bool { return len(c.announce) == 0 && len(c.withdraw) == 0 }

// diffRoutes compares the desired routes with what was last sent. A sent entry
// whose state is unknown (an earlier call failed half-way) is re-sent when
// desired and withdrawn when not. The result is sorted by prefix so logs and
// tests are stable.
func diffRoutes(sent map[netip.Prefix]sentRoute, want map[netip.Prefix]route) ribChange {
	var c ribChange
	for p, w := range want {
		s, ok := sent[p]
		if !ok || s.unknown || !s.route.equal(w) {
			c.announce = append(c.announce, w)
		}
	}
	for p, s := range sent {
		if _, ok := want[p]; !ok {
			c.withdraw = append(c.withdraw, s.route)
		}
	}
	byPrefix := func(a, b route) int { return comparePrefix(a.prefix, b.prefix) }
	slices.SortFunc(c.announce, byPrefix)
	slices.SortFunc(c.withdraw, byPrefix)
	return c
}

// sentRoute is a route handed to GoBGP; unknown means the call that carried it
// failed, so whether GoBGP holds it is not known.
type sentRoute struct {
	route   route
	unknown bool
}

// comparePrefix orders prefixes by address, then length.
func comparePrefix(a, b netip.Prefix) int {
	return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
}
