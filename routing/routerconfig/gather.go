package routerconfig

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"time"

	"github.com/anycast-director/director/config"
)

// sortedDirectors returns the configurations in director-name order (then by
// file), rejecting nil entries.
func sortedDirectors(cfgs []*config.Config) ([]*config.Config, error) {
	if len(cfgs) == 0 {
		return nil, errors.New("no director configuration given: pass at least one director's config file")
	}
	dirs := slices.Clone(cfgs)
	for i, c := range dirs {
		if c == nil {
			return nil, fmt.Errorf("director configuration %d is nil", i+1)
		}
	}
	slices.SortStableFunc(dirs, func(a, b *config.Config) int {
		return cmp.Or(cmp.Compare(a.Director.Name, b.Director.Name), cmp.Compare(a.Source, b.Source))
	})
	return dirs, nil
}

// gatherer collects what the directors say about this router while build
// walks them: the AS numbers the peer entries give the router, the OSPF
// directors and the VIPs of each family.
type gatherer struct {
	opts        Options
	routerAddrs map[netip.Addr]bool
	names       map[string]string
	asnBy       map[uint32][]string
	ospfDirs    []*config.Config
	v4, v6      map[netip.Prefix]bool
}

// newGatherer returns an empty gatherer for the router the options describe.
func newGatherer(opts Options) *gatherer {
	g := &gatherer{
		opts:        opts,
		routerAddrs: map[netip.Addr]bool{},
		names:       map[string]string{},
		asnBy:       map[uint32][]string{},
		v4:          map[netip.Prefix]bool{},
		v6:          map[netip.Prefix]bool{},
	}
	for _, a := range opts.RouterAddresses {
		g.routerAddrs[a.Unmap()] = true
	}
	return g
}

// gatherAll adds every director to the model and returns all their errors at
// once.
func (g *gatherer) gatherAll(m *model, dirs []*config.Config) error {
	var errs []error
	for _, c := range dirs {
		if err := g.gather(m, c); err != nil {
			errs = append(errs, err)
		}
	}
	slices.Sort(m.notes)
	m.notes = slices.Compact(m.notes)
	return errors.Join(errs...)
}

// gather adds one director: its sessions and VIPs for BGP, its configuration
// for OSPF, a note when it announces nothing.
func (g *gatherer) gather(m *model, c *config.Config) error {
	src := sourceName(c)
	m.sources = append(m.sources, src)
	if first, dup := g.names[c.Director.Name]; dup {
		return fmt.Errorf("%s and %s both name their director %q: director names must be unique", first, src, c.Director.Name)
	}
	g.names[c.Director.Name] = src
	switch c.Director.Announce {
	case config.AnnounceBGP:
		return g.gatherBGP(m, c, src)
	case config.AnnounceKernel:
		g.ospfDirs = append(g.ospfDirs, c)
	default:
		m.notes = append(m.notes, fmt.Sprintf("director %s (%s) announces nothing (announce: %s): no configuration for it", c.Director.Name, src, c.Director.Announce))
	}
	return nil
}

// gatherBGP adds a BGP director's sessions to the model and its VIPs to the
// import filter, noting VIPs that no session to this router can carry.
func (g *gatherer) gatherBGP(m *model, c *config.Config, src string) error {
	if c.BGP == nil {
		return fmt.Errorf("%s announces with bgp but has no bgp section", who(c))
	}
	ss, err := sessions(c, src, g.routerAddrs, g.opts, g.asnBy)
	if err != nil {
		return err
	}
	m.sessions = append(m.sessions, ss...)
	has4, has6 := false, false
	for _, s := range ss {
		has4, has6 = has4 || s.ipv4, has6 || s.ipv6
	}
	for _, svc := range c.Services {
		p := netip.PrefixFrom(svc.VIP.Unmap(), svc.VIP.Unmap().BitLen())
		if p.Addr().Is4() {
			g.v4[p] = true
		} else {
			g.v6[p] = true
		}
		if (p.Addr().Is4() && !has4) || (p.Addr().Is6() && !has6) {
			m.notes = append(m.notes, fmt.Sprintf("director %s has VIP %s but no session to this router carries its address family: it never reaches this router", c.Director.Name, p.Addr()))
		}
	}
	return nil
}

// setLimits sets the ECMP width and the max-prefix limit from the options.
func (m *model) setLimits(opts Options, directors int) error {
	m.maxPaths = opts.MaximumPaths
	if m.maxPaths == 0 {
		m.maxPaths = max(8, directors)
	}
	if m.maxPaths < 1 || m.maxPaths > 256 {
		return fmt.Errorf("maximum paths %d is out of range 1..256", m.maxPaths)
	}
	if opts.MaxPrefix < 0 {
		return fmt.Errorf("max prefix %d is negative", opts.MaxPrefix)
	}
	m.maxPrefix = opts.MaxPrefix
	return nil
}

// sessions returns the router's neighbors for one BGP director.
func sessions(c *config.Config, src string, routerAddrs map[netip.Addr]bool, opts Options, asnBy map[uint32][]string) ([]session, error) {
	var out []session
	var errs []error
	for i, p := range c.BGP.Peers {
		raddr := p.Address.Unmap()
		if len(routerAddrs) > 0 && !routerAddrs[raddr] {
			continue
		}
		where := fmt.Sprintf("%s, bgp.peers[%d] (%s)", who(c), i, raddr)
		asnBy[p.ASN] = append(asnBy[p.ASN], fmt.Sprintf("%s says %d", where, p.ASN))
		s, err := peerSession(c, p, src)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
			continue
		}
		out = append(out, s)
	}
	if len(out) == 0 && len(errs) == 0 {
		errs = append(errs, fmt.Errorf("%s has no peer entry for this router (addresses %v): add one, or leave the director out", who(c), opts.RouterAddresses))
	}
	return out, errors.Join(errs...)
}

// peerSession returns the router's neighbor for one peer entry of a director,
// or what keeps the router from peering with it.
func peerSession(c *config.Config, p config.Peer, src string) (session, error) {
	s := session{
		director:    c.Director.Name,
		source:      src,
		routerAddr:  p.Address.Unmap(),
		asn:         c.BGP.ASN,
		password:    p.Password,
		hold:        int(p.HoldTime / time.Second),
		keepalive:   int(p.Keepalive / time.Second),
		multihop:    p.MultihopTTL,
		ttlSecurity: p.TTLSecurity,
		ipv4:        p.IPv4,
		ipv6:        p.IPv6,
	}
	if err := s.setDirectorAddress(c, p); err != nil {
		return s, err
	}
	if err := checkPeer(c, p); err != nil {
		return s, err
	}
	s.setPorts(c, p)
	if p.BFD != nil {
		ms := int(p.BFD.MinInterval / time.Millisecond)
		s.bfd = &bfdProfile{name: fmt.Sprintf("directord-%dms-x%d", ms, p.BFD.Multiplier), intervalMS: ms, multiplier: int(p.BFD.Multiplier)}
	}
	if gr := c.BGP.GracefulRestart; gr != nil {
		s.restartTime = int(gr.RestartTime / time.Second)
	}
	if !s.ipv4 && !s.ipv6 {
		return s, errors.New("the session carries no address family")
	}
	return s, nil
}

// setDirectorAddress sets the director's address as the router sees it: the
// peer's local_address, else (IPv4 only) the director's router ID.
func (s *session) setDirectorAddress(c *config.Config, p config.Peer) error {
	raddr := s.routerAddr
	switch {
	case p.LocalAddress.IsValid():
		s.addr = p.LocalAddress.Unmap()
		s.addrNote = "its local_address"
	case raddr.Is4():
		s.addr = c.BGP.RouterID.Unmap()
		s.addrNote = fmt.Sprintf("no local_address for peer %s, so its bgp.router_id; the director must source the session from that address", raddr)
	default:
		return fmt.Errorf("an IPv6 session needs the director's IPv6 address, but the peer has no local_address (bgp.router_id %s is IPv4): set local_address", c.BGP.RouterID)
	}
	if s.addr.Is4() != raddr.Is4() {
		return fmt.Errorf("director address %s and router address %s are of different families", s.addr, raddr)
	}
	return nil
}

// checkPeer rejects peer settings no router can match.
func checkPeer(c *config.Config, p config.Peer) error {
	if err := checkPassword(p.Password); err != nil {
		return err
	}
	if p.MultihopTTL != 0 && p.TTLSecurity != 0 {
		return errors.New("multihop_ttl and ttl_security are both set; routers accept only one")
	}
	if p.Passive && c.BGP.ListenPort == 0 {
		return errors.New("the peer is passive but the director does not listen (bgp.listen_port 0), so nobody would connect")
	}
	return nil
}

// setPorts sets who dials whom and on which ports.
func (s *session) setPorts(c *config.Config, p config.Peer) {
	switch c.BGP.ListenPort {
	case 0:
		s.passive = true
	case 179:
	default:
		s.dirPort = c.BGP.ListenPort
	}
	if p.Port != 179 && p.Port != 0 {
		s.routerPort = p.Port
	}
}

// checkPassword rejects MD5 keys that FRR (one word) or BIRD (a quoted string)
// cannot carry literally.
func checkPassword(pw string) error {
	for _, r := range pw {
		if r <= ' ' || r == '"' || r == '\\' || r == 0x7f {
			return fmt.Errorf("the MD5 password contains a space, a quote, a backslash or a control character, which router configurations cannot carry: choose another password")
		}
	}
	return nil
}
