// Package routerconfig prints the router side of the directors' routing: the
// FRR or BIRD configuration an upstream router needs to peer with every
// director of a set, derived from the directors' own configuration files so
// both sides cannot drift apart.
//
// For BGP directors it writes one static neighbor per director session (not
// "bgp listen range": with it FRR 8.4 re-creates the BFD session when BGP comes
// up and GoBGP flaps the peer), with the director's timers, TCP MD5 password,
// BFD timers, eBGP multihop or GTSM, fast connect timers, an import policy that
// accepts only the directors' configured VIPs (host prefixes, exact match; the
// GRACEFUL_SHUTDOWN community lowers the local preference to 0 per RFC 8326) with
// a max-prefix limit, an export policy that sends nothing, and ECMP over all
// directors. For OSPF directors (announce: kernel) it writes the area
// configuration of the router's interfaces toward them.
//
// The director's address as the router sees it is the peer's local_address in
// the director's configuration; without one the generator falls back to the
// director's bgp.router_id and says so in a comment of the output. Router-level
// values that director files do not carry come from the peer entries (a peer's
// address is the router's address, its asn the router's AS number) or from
// Options.
package routerconfig

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"

	"github.com/anycast-director/director/config"
)

// Options carries the router-level parameters that director configurations do
// not hold. The zero value works for a single router that every peer entry
// points at.
type Options struct {
	// RouterAddresses are this router's addresses. Only peer entries whose
	// address is one of them describe this router; empty means every peer entry
	// of every director is this router.
	RouterAddresses []netip.Addr
	// RouterASN is the router's AS number; 0 takes it from the peer entries,
	// which must agree. When set, the peer entries must agree with it.
	RouterASN uint32
	// RouterID is the router's BGP and OSPF router ID; invalid takes the lowest
	// IPv4 router address of the peer entries.
	RouterID netip.Addr
	// MaximumPaths is the ECMP width; 0 means max(8, number of directors).
	MaximumPaths int
	// MaxPrefix limits the prefixes accepted per session and family; 0 means the
	// number of configured VIPs of that family (the import filter accepts no
	// more, so the limit only trips when the filter is wrong).
	MaxPrefix int
	// OSPF configures the router's side of OSPF directors (announce: kernel).
	OSPF OSPFOptions
}

// OSPFOptions describes the router's OSPF interfaces toward the directors.
type OSPFOptions struct {
	// Interfaces are the router's interfaces toward OSPF directors; required
	// when any director announces through OSPF.
	Interfaces []string
	// Area is the OSPF area of those interfaces; invalid means 0.0.0.0.
	Area netip.Addr
	// PointToPoint runs the interfaces as point-to-point links (one director
	// per link): no DR election, so adjacencies come up seconds sooner.
	PointToPoint bool
}

// Timers the router side always uses, with the reasons.
const (
	// connectRetry: retry a connection to a director every second, so a
	// restarted director is back in the ECMP set at once.
	connectRetry = 1
	// helloInterval and deadInterval: OSPF's fastest whole-second timers, a
	// failed director is gone from the ECMP set within 3 s.
	helloInterval = 1
	deadInterval  = 3
	// maxPrefixRestartMinutes: a session cut by the prefix limit comes back by
	// itself after a minute.
	maxPrefixRestartMinutes = 1
)

// model is the router's view of all directors, independent of the flavor.
type model struct {
	sources   []string
	notes     []string
	routerASN uint32
	routerID  netip.Addr
	idNote    string
	sessions  []session
	vips4     []netip.Prefix
	vips6     []netip.Prefix
	profiles  []bfdProfile
	relax     bool
	ibgp      bool
	multihop  bool // a session is multihop: next hops resolve recursively
	maxPaths  int
	maxPrefix int
	ospf      *ospfModel
}

// session is one BGP neighbor of the router: one director's peer entry.
type session struct {
	director   string
	source     string
	addr       netip.Addr
	addrNote   string
	routerAddr netip.Addr
	asn        uint32
	password   string
	hold       int
	keepalive  int
	// dirPort is the director's listen port when not 179 (0: standard).
	dirPort uint16
	// routerPort is the port the director dials on the router when not 179.
	routerPort uint16
	// passive: the director does not listen, so the router must not dial.
	passive     bool
	multihop    uint8
	ttlSecurity uint8
	bfd         *bfdProfile
	ipv4, ipv6  bool
	// restartTime is the director's Graceful Restart time in seconds; 0
	// when it does not restart gracefully.
	restartTime int
}

// hops is how far the director may be: 1 for a directly connected one.
func (s session) hops() int { return max(1, int(s.multihop), int(s.ttlSecurity)) }

// bfdProfile is one set of BFD timers shared by sessions.
type bfdProfile struct {
	name       string
	intervalMS int
	multiplier int
}

// ospfModel is the router side of the OSPF directors.
type ospfModel struct {
	directors  []string
	interfaces []string
	area       netip.Addr
	p2p        bool
	ipv6       bool
}

// Generate prints the router configuration for flavor "frr" or "bird" from one
// or more director configurations. It fails, saying which director and field,
// when the directors cannot share one router: they disagree about the router's
// AS number, two sessions use the same director address, an IPv6 session has no
// director address, and so on.
func Generate(flavor string, cfgs []*config.Config, opts Options) ([]byte, error) {
	var render func(*model) []byte
	switch flavor {
	case "frr":
		render = renderFRR
	case "bird":
		render = renderBIRD
	default:
		return nil, fmt.Errorf("unknown router flavor %q: use frr or bird", flavor)
	}
	m, err := build(cfgs, opts)
	if err != nil {
		return nil, err
	}
	return render(m), nil
}

// build turns director configurations into the router's model.
func build(cfgs []*config.Config, opts Options) (*model, error) {
	dirs, err := sortedDirectors(cfgs)
	if err != nil {
		return nil, err
	}
	m := &model{}
	g := newGatherer(opts)
	if err := g.gatherAll(m, dirs); err != nil {
		return nil, err
	}
	if len(m.sessions) == 0 && len(g.ospfDirs) == 0 {
		return nil, errors.New("no director announces to this router: every director has announce: none, or no peer entry matches the router's addresses")
	}
	if err := m.resolveASN(g.asnBy, opts.RouterASN); err != nil {
		return nil, err
	}
	if err := m.checkSessions(); err != nil {
		return nil, err
	}
	if err := m.resolveRouterID(opts.RouterID); err != nil {
		return nil, err
	}
	m.vips4, m.vips6 = sortedSet(g.v4), sortedSet(g.v6)
	if err := m.setLimits(opts, len(dirs)); err != nil {
		return nil, err
	}
	m.finishBGP()
	if len(g.ospfDirs) > 0 {
		o, err := ospf(g.ospfDirs, opts.OSPF)
		if err != nil {
			return nil, err
		}
		m.ospf = o
	}
	return m, nil
}

// resolveASN settles the router's AS number from the peer entries and options.
func (m *model) resolveASN(asnBy map[uint32][]string, want uint32) error {
	if len(asnBy) == 0 {
		m.routerASN = want
		return nil
	}
	asns := make([]uint32, 0, len(asnBy))
	for a := range asnBy {
		asns = append(asns, a)
	}
	slices.Sort(asns)
	if len(asns) > 1 || (want != 0 && asns[0] != want) {
		var lines []string
		if want != 0 {
			lines = append(lines, fmt.Sprintf("the router AS option says %d", want))
		}
		for _, a := range asns {
			lines = append(lines, asnBy[a]...)
		}
		return fmt.Errorf("the directors disagree about the router's AS number:\n  %s\nfix the peer asn in the director configs, or, if these are different routers, pass this router's addresses so only its peer entries count", strings.Join(lines, "\n  "))
	}
	m.routerASN = asns[0]
	return nil
}

// checkSessions rejects two sessions with the same director address.
func (m *model) checkSessions() error {
	slices.SortStableFunc(m.sessions, func(a, b session) int {
		return cmp.Or(cmp.Compare(a.director, b.director), a.addr.Compare(b.addr))
	})
	seen := map[netip.Addr]session{}
	var errs []error
	for _, s := range m.sessions {
		if first, dup := seen[s.addr]; dup {
			errs = append(errs, fmt.Errorf("directors %s (%s) and %s (%s) both use %s as the director address: a router has one neighbor per address; set distinct local_address values",
				first.director, first.source, s.director, s.source, s.addr))
			continue
		}
		seen[s.addr] = s
	}
	return errors.Join(errs...)
}

// resolveRouterID picks the router ID: the option, else the lowest IPv4
// router address of the peer entries.
func (m *model) resolveRouterID(want netip.Addr) error {
	if want.IsValid() {
		if !want.Unmap().Is4() {
			return fmt.Errorf("router ID %s is not an IPv4 address", want)
		}
		m.routerID = want.Unmap()
		return nil
	}
	for _, s := range m.sessions {
		if s.routerAddr.Is4() && (!m.routerID.IsValid() || s.routerAddr.Less(m.routerID)) {
			m.routerID = s.routerAddr
		}
	}
	if !m.routerID.IsValid() {
		return errors.New("no router ID: no director peers with an IPv4 router address; give the router ID explicitly")
	}
	m.idNote = "the lowest IPv4 router address in the directors' peer entries"
	return nil
}

// finishBGP derives the shared BGP settings: BFD profiles, multipath-relax,
// iBGP multipath.
func (m *model) finishBGP() {
	asns := map[uint32]bool{}
	profiles := map[string]bfdProfile{}
	for _, s := range m.sessions {
		asns[s.asn] = true
		if s.asn == m.routerASN {
			m.ibgp = true
		}
		if s.bfd != nil {
			profiles[s.bfd.name] = *s.bfd
		}
		m.multihop = m.multihop || s.hops() > 1
	}
	m.relax = len(asns) > 1
	for _, p := range profiles {
		m.profiles = append(m.profiles, p)
	}
	slices.SortFunc(m.profiles, func(a, b bfdProfile) int { return cmp.Compare(a.name, b.name) })
}

// limit returns the max-prefix limit for a family.
func (m *model) limit(v6 bool) int {
	if m.maxPrefix > 0 {
		return m.maxPrefix
	}
	n := len(m.vips4)
	if v6 {
		n = len(m.vips6)
	}
	return max(n, 1)
}

// hasFamily reports whether any session carries the family.
func (m *model) hasFamily(v6 bool) bool {
	for _, s := range m.sessions {
		if (v6 && s.ipv6) || (!v6 && s.ipv4) {
			return true
		}
	}
	return false
}

// ospf builds the router side of the OSPF directors.
func ospf(dirs []*config.Config, opts OSPFOptions) (*ospfModel, error) {
	o := &ospfModel{area: netip.IPv4Unspecified(), p2p: opts.PointToPoint}
	if opts.Area.IsValid() {
		if !opts.Area.Unmap().Is4() {
			return nil, fmt.Errorf("OSPF area %s is not a dotted-quad (IPv4 form) area ID", opts.Area)
		}
		o.area = opts.Area.Unmap()
	}
	for _, c := range dirs {
		o.directors = append(o.directors, fmt.Sprintf("%s (%s, kernel table %d, protocol %d)", c.Director.Name, sourceName(c), c.Kernel.Table, c.Kernel.Protocol))
		for _, svc := range c.Services {
			if svc.VIP.Unmap().Is6() {
				o.ipv6 = true
			}
		}
	}
	if len(opts.Interfaces) == 0 {
		var names []string
		for _, c := range dirs {
			names = append(names, c.Director.Name)
		}
		return nil, fmt.Errorf("directors %s announce through OSPF (announce: kernel): give the router's interfaces toward them (Options.OSPF.Interfaces; -ospf-interfaces with directord router-config)", strings.Join(names, ", "))
	}
	seen := map[string]bool{}
	for _, ifc := range opts.Interfaces {
		if ifc == "" || len(ifc) > 15 || strings.ContainsAny(ifc, " \t\"/") {
			return nil, fmt.Errorf("OSPF interface %q is not a valid interface name", ifc)
		}
		if !seen[ifc] {
			seen[ifc] = true
			o.interfaces = append(o.interfaces, ifc)
		}
	}
	return o, nil
}

// sourceName is the file name shown for a configuration.
func sourceName(c *config.Config) string {
	if c.Source == "" {
		return "(config of " + c.Director.Name + " without a file)"
	}
	return filepath.Base(c.Source)
}

// who names a director in error messages: its file, when there is one, and
// its name.
func who(c *config.Config) string {
	if c.Source == "" {
		return "director " + c.Director.Name
	}
	return filepath.Base(c.Source) + ": director " + c.Director.Name
}

// sortedSet returns a set's prefixes in address order.
func sortedSet(set map[netip.Prefix]bool) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(set))
	for p := range set {
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	return out
}
