package config

import (
	"fmt"
	"math"
	"net/netip"
	"time"
)

// Limits of BGP settings, from the protocols and the kernel.
const (
	// maxMD5KeyLen is the kernel's TCP_MD5SIG_MAXKEYLEN.
	maxMD5KeyLen = 80
	// minHoldTime is RFC 4271's smallest non-zero hold time.
	minHoldTime = 3 * time.Second
	// maxBGPTimer is the largest value BGP's 16-bit second fields carry.
	maxBGPTimer = 65535 * time.Second
	// minBFDInterval keeps BFD above what a userspace speaker can honour.
	minBFDInterval = 10 * time.Millisecond
	// minRestartTime leaves a restarted directord time to start, learn its
	// backends and reconnect; maxRestartTime bounds how long a router
	// forwards to a director whose daemon is gone (the capability carries
	// up to 4095 s).
	minRestartTime = 5 * time.Second
	maxRestartTime = 10 * time.Minute
	// maxBFDInterval is the largest interval BFD's 32-bit microsecond fields carry,
	// rounded down to a minute.
	maxBFDInterval = 60 * time.Minute
)

// asn validates an AS number: present, in 32-bit range, and not one of the
// numbers reserved by RFC 6793 (AS_TRANS) and RFC 7300 (the last 16-bit and
// 32-bit numbers).
func (v *validator) asn(p *int64, path, what string) uint32 {
	if p == nil {
		v.missing(path, "required: %s", what)
		return 0
	}
	n, ok := v.integer(p, path, 0, 1, math.MaxUint32)
	if !ok {
		return 0
	}
	switch n {
	case 23456:
		v.errf(path, "23456 is AS_TRANS (RFC 6793), not a real AS number")
		return 0
	case 65535, math.MaxUint32:
		v.errf(path, "%d is reserved (RFC 7300)", n).hintf("private AS numbers are 64512..65534 and 4200000000..4294967294")
		return 0
	}
	return uint32(n)
}

// bgp validates the bgp section. It is validated whenever present so that a
// section kept for later is still correct; with announce other than bgp it is
// ignored with a warning.
func (v *validator) bgp(b *rawBGP, announce Announce) *BGP {
	if b == nil {
		if announce == AnnounceBGP && !v.failed("bgp") {
			v.errf("director.announce", "announce: bgp needs a bgp section").
				hintf("add bgp: with asn, router_id and peers, or set announce: none")
		}
		return nil
	}
	if announce != AnnounceBGP {
		v.warnf("bgp", "the bgp section is ignored: director.announce is %s", announce)
	}
	out := &BGP{}
	out.ASN = v.asn(b.ASN, "bgp.asn", "the director's AS number")
	if id, ok := v.requiredAddr(b.RouterID, "bgp.router_id", "BGP identifier, an IPv4 address"); ok {
		switch {
		case !id.Is4():
			v.errf("bgp.router_id", "%s is not an IPv4 address", id).
				hintf("the BGP identifier is 32 bits even on IPv6-only directors; use an IPv4 address of the director")
		case id.IsUnspecified():
			v.errf("bgp.router_id", "0.0.0.0 is not a valid BGP identifier")
		default:
			out.RouterID = id
		}
	}
	port, _ := v.integer(b.ListenPort, "bgp.listen_port", DefaultBGPPort, 0, 65535)
	out.ListenPort = uint16(port)
	seen := make(map[netip.Addr]string)
	for i, a := range b.ListenAddresses {
		path := indexPath("bgp.listen_addresses", i)
		addr, ok := v.requiredAddr(a, path, "address to listen on")
		if !ok {
			continue
		}
		if first, dup := seen[addr]; dup {
			v.errf(path, "%s is listed twice (first at %s)", addr, v.lineRef(first))
			continue
		}
		seen[addr] = path
		out.ListenAddresses = append(out.ListenAddresses, addr)
	}
	if announce == AnnounceBGP && len(b.Peers) == 0 {
		v.missing("bgp.peers", "announce: bgp needs at least one peer").
			hintf("add peers: with the address and asn of each upstream router")
	}
	peers := make(map[netip.Addr]string)
	for i, rp := range b.Peers {
		path := indexPath("bgp.peers", i)
		if rp == nil {
			v.missing(path, "empty peer").hintf("remove the lone '-' or fill in address and asn")
			continue
		}
		p, ok := v.peer(rp, path, out.ListenPort)
		if ok {
			if first, dup := peers[p.Address]; dup {
				v.errf(path+".address", "peer %s is listed twice (first at %s)", p.Address, v.lineRef(first))
			}
			peers[p.Address] = path + ".address"
		}
		out.Peers = append(out.Peers, p)
	}
	if b.GracefulRestart != nil {
		out.GracefulRestart = v.gracefulRestart(b.GracefulRestart, "bgp.graceful_restart")
	}
	return out
}

// gracefulRestart validates bgp.graceful_restart.
func (v *validator) gracefulRestart(g *rawGR, path string) *GracefulRestart {
	d, _ := v.seconds(g.RestartTime, path+".restart_time", DefaultRestartTime, minRestartTime, maxRestartTime)
	return &GracefulRestart{RestartTime: d}
}

// peer validates one neighbor. ok is false when its address is unusable.
func (v *validator) peer(rp *rawPeer, path string, listenPort uint16) (Peer, bool) {
	p := Peer{}
	addr, ok := v.requiredAddr(rp.Address, path+".address", "neighbor's address")
	if ok && (addr.IsUnspecified() || addr.IsMulticast()) {
		v.errf(path+".address", "%s is not a unicast address", addr)
		ok = false
	}
	p.Address = addr
	p.ASN = v.asn(rp.ASN, path+".asn", "the neighbor's AS number")
	port, _ := v.integer(rp.Port, path+".port", DefaultBGPPort, 1, 65535)
	p.Port = uint16(port)
	if rp.LocalAddress != nil {
		if la, lok := v.addr(rp.LocalAddress, path+".local_address"); lok {
			if ok && la.Is4() != addr.Is4() {
				v.errf(path+".local_address", "%s is not of the same address family as the peer %s", la, addr)
			}
			p.LocalAddress = la
		}
	}

	hold, holdOK := v.seconds(rp.HoldTime, path+".hold_time", DefaultHoldTime, 0, maxBGPTimer)
	if holdOK && hold != 0 && hold < minHoldTime {
		v.errf(path+".hold_time", "%s is below the 3s minimum (RFC 4271)", hold).
			hintf("use 0 (no keepalives) or at least 3s; for faster failure detection enable bfd")
		holdOK = false
	}
	p.HoldTime = hold
	ka, kaOK := v.seconds(rp.Keepalive, path+".keepalive", defaultKeepalive(hold), 0, maxBGPTimer)
	p.Keepalive = ka
	if holdOK && kaOK && rp.Keepalive != nil {
		switch {
		case hold == 0 && ka != 0:
			v.errf(path+".keepalive", "keepalive %s with hold_time 0", ka).
				hintf("a hold time of 0 turns keepalives off; set keepalive: 0s or a hold time")
		case hold != 0 && ka >= hold:
			v.errf(path+".keepalive", "keepalive %s is not shorter than hold_time %s", ka, hold).
				hintf("use a third of the hold time, e.g. %s", defaultKeepalive(hold))
		case hold != 0 && ka == 0:
			v.errf(path+".keepalive", "keepalive 0s with hold_time %s would let the session expire", hold).
				hintf("use a third of the hold time, e.g. %s", defaultKeepalive(hold))
		}
	}
	p.ConnectRetry, _ = v.seconds(rp.ConnectRetry, path+".connect_retry", DefaultConnectRetry, time.Second, maxBGPTimer)
	p.IdleHoldAfterReset, _ = v.seconds(rp.IdleHoldAfterReset, path+".idle_hold_after_reset", DefaultIdleHoldAfterReset, time.Second, maxBGPTimer)
	if rp.Passive != nil {
		p.Passive = *rp.Passive
	}
	if p.Passive && listenPort == 0 {
		v.errf(path+".passive", "a passive peer needs the speaker to listen, but bgp.listen_port is 0").
			hintf("set bgp.listen_port (default 179) or make the peer active")
	}
	ttl, _ := v.integer(rp.MultihopTTL, path+".multihop_ttl", 0, 0, 255)
	p.MultihopTTL = uint8(ttl)
	gtsm, _ := v.integer(rp.TTLSecurity, path+".ttl_security", 0, 0, 254)
	p.TTLSecurity = uint8(gtsm)
	if p.MultihopTTL != 0 && p.TTLSecurity != 0 {
		v.errf(path+".ttl_security", "ttl_security and multihop_ttl are both set").
			hintf("GTSM already allows the peer ttl_security hops away; keep one of them")
	}
	p.Password, p.PasswordFrom = v.password(rp, path)
	if rp.BFD != nil {
		p.BFD = v.bfd(rp.BFD, path+".bfd")
		if hops := p.Hops(); hops > 1 {
			// The embedded speaker runs single-hop BFD (RFC 5881: TTL 255,
			// port 3784); a router expects multihop BFD (RFC 5883, port
			// 4784) on such a session, and the two never meet.
			v.warnf(path+".bfd", "bfd is not used on this session: it is multihop (%d hops) and the speaker runs single-hop BFD only", hops).
				hintf("remove bfd; failures of this session are detected by hold_time, and router-config leaves BFD out for it")
			p.BFD = nil
		} else if p.TTLSecurity > 0 {
			v.warnf(path+".bfd", "with an FRR router, bfd stays down on this ttl_security session: FRR 8.4 runs multihop BFD with GTSM neighbors, and the speaker answers single-hop BFD only").
				hintf("BIRD runs single-hop BFD here; with FRR, router-config leaves BFD out for this session and failures are detected by hold_time")
		}
	}
	p.IPv4, p.IPv6 = v.families(rp.Families, path+".families", addr.Is4() || !ok)
	return p, ok
}

func (v *validator) bfd(b *rawBFD, path string) *BFD {
	out := &BFD{MinInterval: DefaultBFDMinInterval, Multiplier: DefaultBFDMultiplier}
	if d, ok := v.duration(b.MinInterval, path+".min_interval", DefaultBFDMinInterval); ok {
		if d < minBFDInterval || d > maxBFDInterval {
			v.errf(path+".min_interval", "%s is out of range (%s..%s)", d, minBFDInterval, maxBFDInterval).
				hintf("100ms to 300ms is usual")
		} else {
			out.MinInterval = d
		}
	}
	if m, ok := v.integer(b.Multiplier, path+".multiplier", DefaultBFDMultiplier, 1, 255); ok {
		out.Multiplier = uint8(m)
	}
	return out
}

// families returns the address families of a session; the default is the
// family of the peer's address.
func (v *validator) families(fs []*string, path string, peerIs4 bool) (ipv4, ipv6 bool) {
	if fs == nil {
		return defaultFamilies(peerIs4)
	}
	if len(fs) == 0 {
		v.errf(path, "no address family").hintf("list ipv4, ipv6 or both, or remove the key to use the peer's family")
		return defaultFamilies(peerIs4)
	}
	for i, f := range fs {
		fp := indexPath(path, i)
		if f == nil {
			v.missing(fp, "empty address family").hintf("ipv4 or ipv6")
			continue
		}
		name, ok := v.enum(f, fp, "address family", "", []string{"ipv4", "ipv6"})
		if !ok {
			continue
		}
		if name == "ipv4" && ipv4 || name == "ipv6" && ipv6 {
			v.errf(fp, "%s is listed twice", name)
		}
		ipv4 = ipv4 || name == "ipv4"
		ipv6 = ipv6 || name == "ipv6"
	}
	return ipv4, ipv6
}

// peersNotSelf refuses a peer whose address is the director's own: its
// router_id, a local_address of any session, an address the speaker listens
// on, or a VIP. Such a session would go to the director itself (or, for a
// VIP, be carried by the very route it announces) and never reach a router.
func (v *validator) peersNotSelf(b *BGP, services []Service) {
	own := make(map[netip.Addr]string)
	add := func(a netip.Addr, what string) {
		if _, seen := own[a]; a.IsValid() && !seen {
			own[a] = what
		}
	}
	add(b.RouterID, "this director's bgp.router_id")
	for i, p := range b.Peers {
		add(p.LocalAddress, fmt.Sprintf("this director's own address (local_address of %s)", v.lineRef(indexPath("bgp.peers", i))))
	}
	for i, a := range b.ListenAddresses {
		add(a, fmt.Sprintf("an address the director listens on (%s)", v.lineRef(indexPath("bgp.listen_addresses", i))))
	}
	for i, s := range services {
		add(s.VIP, fmt.Sprintf("a VIP of this director (%s)", v.lineRef(indexPath("services", i))))
	}
	for i, p := range b.Peers {
		if what, self := own[p.Address]; self {
			v.errf(indexPath("bgp.peers", i)+".address", "%s is %s: the session would not reach a router", p.Address, what).
				hintf("the peer address is the upstream router's address on the link to this director")
		}
	}
}
