package config

import (
	"fmt"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"
)

// ipvsSchedulers returns the IPVS schedulers the kernel ships, in ipvsadm's
// order.
func ipvsSchedulers() []string {
	return []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"}
}

// schedulerFlags returns the flags a scheduler understands. The kernel maps
// them onto the same three generic bits, so a flag given to the wrong
// scheduler would silently mean something else.
func schedulerFlags(scheduler string) []string {
	switch scheduler {
	case "sh":
		return []string{"sh-fallback", "sh-port"}
	case "mh":
		return []string{"mh-fallback", "mh-port"}
	}
	return nil
}

// Limits of service settings.
const (
	// maxWeight is the largest weight the brief allows (IPVS takes int32, but
	// weights beyond 65535 only make Maglev tables lopsided).
	maxWeight = 65535
	// maxASPathPrepend keeps prepending to something routers accept.
	maxASPathPrepend = 10
	// maxPersistence: IPVS keeps a client's persistence template this long
	// after its last connection; a day covers any session worth keeping.
	maxPersistence = 24 * time.Hour
)

// serviceKey identifies a virtual service in the kernel.
type serviceKey struct {
	vip   netip.Addr
	port  uint16
	proto Protocol
}

// validity records which of a service's identifying fields parsed, so checks
// that need one run exactly when it is usable.
type validity struct {
	vip, port, proto bool
}

// vipShare remembers the first service of a VIP, whose advertise block the
// others must repeat.
type vipShare struct {
	path      string
	advertise Advertise
	explicit  bool
}

// services validates every service, then the rules across services.
func (v *validator) services(rs []*rawService, announce Announce, bgp *BGP) []Service {
	out := make([]Service, 0, len(rs))
	// Sized once: at 1,000 services, growing them was a tenth of validation.
	names := make(map[string]string, len(rs))
	keys := make(map[serviceKey]string, len(rs))
	vips := make(map[netip.Addr]string, len(rs))
	shared := make(map[netip.Addr]vipShare, len(rs))
	// First pass: every service's own fields, so the backend checks below know
	// every VIP of the file.
	valid := make([]validity, len(rs))
	for i, r := range rs {
		path := indexPath("services", i)
		if r == nil {
			v.missing(path, "empty service").hintf("remove the lone '-' or fill in name, vip and port")
			out = append(out, Service{})
			continue
		}
		s, ok := v.service(r, path, announce, bgp)
		valid[i] = ok
		if s.Name != "" {
			if first, dup := names[s.Name]; dup {
				v.errf(v.join(path, ".name"), "duplicate service name %q (first at %s)", s.Name, v.lineRef(first)).
					hintf("service names must be unique; directorctl and metrics address services by name")
			} else {
				names[s.Name] = v.join(path, ".name")
			}
		}
		if ok.vip && ok.port && ok.proto {
			k := serviceKey{s.VIP, s.Port, s.Protocol}
			if first, dup := keys[k]; dup {
				v.errf(v.join(path, ".vip"), "%s %s is already served by %s", s.Protocol, netip.AddrPortFrom(s.VIP, s.Port), v.lineRef(first)).
					hintf("one VIP:port:protocol is one IPVS service; merge the backends into one service")
			} else {
				keys[k] = path
			}
		}
		if ok.vip {
			if _, seen := vips[s.VIP]; !seen {
				vips[s.VIP] = v.join(path, ".vip")
			}
			v.sharedAdvertise(shared, s, path, r.Advertise != nil)
		}
		out = append(out, s)
	}
	for i, r := range rs {
		if r == nil {
			continue
		}
		path := indexPath("services", i)
		s := &out[i]
		s.Backends = v.backends(r.Backends, path, s, valid[i], vips)
		v.minHealthy(r.MinHealthy, path, s)
		if r.Health != nil && r.Health.Source != nil && s.Health.Source.IsValid() {
			for _, t := range s.HealthTargets() {
				if t.Addr().IsValid() && t.Addr().Is4() != s.Health.Source.Is4() {
					v.errf(v.join(path, ".health.source"), "%s cannot reach the target %s (other address family)", s.Health.Source, t.Addr())
					break
				}
			}
		}
	}
	return out
}

// service validates one service's own fields (not its backends) and says
// which of VIP, port and protocol are usable for the checks that need them.
func (v *validator) service(r *rawService, path string, announce Announce, bgp *BGP) (Service, validity) {
	s := Service{}
	ok := validity{}
	switch {
	case r.Name == nil || *r.Name == "":
		v.missing(v.join(path, ".name"), "required: the service's name").hintf("for example name: web")
	case !isName(*r.Name):
		v.errf(v.join(path, ".name"), "%q is not a valid name", *r.Name).hintf(nameHint)
	default:
		s.Name = *r.Name
	}
	vip, vok := v.requiredAddr(r.VIP, v.join(path, ".vip"), "virtual IP address")
	if vok {
		switch {
		case vip.IsUnspecified() || vip.IsMulticast():
			v.errf(v.join(path, ".vip"), "%s is not a unicast address", vip)
			vok = false
		case vip.IsLoopback() && announce != AnnounceNone:
			v.errf(v.join(path, ".vip"), "%s is a loopback address and cannot be announced", vip).
				hintf("use a routable address, or announce: none for a lab")
			vok = false
		}
	}
	ok.vip = vok
	s.VIP = vip
	if r.Port == nil {
		v.missing(v.join(path, ".port"), "required: the service port")
	} else if p, pok := v.integer(r.Port, v.join(path, ".port"), 0, 1, 65535); pok {
		s.Port = uint16(p)
		ok.port = true
	}
	proto, pok := v.enum(r.Protocol, v.join(path, ".protocol"), "protocol", DefaultProtocol.String(), []string{"tcp", "udp"})
	s.Protocol = map[string]Protocol{"tcp": TCP, "udp": UDP}[proto]
	ok.proto = pok
	sched, schedOK := v.enum(r.Scheduler, v.join(path, ".scheduler"), "IPVS scheduler", DefaultScheduler, ipvsSchedulers())
	s.Scheduler = sched
	s.SchedulerFlags = v.flags(r.SchedulerFlags, v.join(path, ".scheduler_flags"), sched, schedOK)
	persist, pok := v.durationAtMost(r.Persistence, v.join(path, ".persistence"), 0, maxPersistence,
		"IPVS keeps a client's template this long after its last connection; minutes are usual")
	if pok && persist%time.Second != 0 {
		v.errf(v.join(path, ".persistence"), "%s is not a whole number of seconds", persist).
			hintf("IPVS counts persistence timeouts in seconds")
		persist = 0
	}
	s.Persistence = persist
	fwd, _ := v.enum(r.Forwarding, v.join(path, ".forwarding"), "forwarding method", DefaultForwarding.String(), []string{"dr", "nat", "tunnel", "local"})
	s.Forwarding = map[string]Forwarding{"dr": ForwardDR, "nat": ForwardNAT, "tunnel": ForwardTunnel, "local": ForwardLocal}[fwd]
	s.Health = v.check(r.Health, v.join(path, ".health"))
	if s.Health.ForwardingCheck {
		v.forwardingCheck(s, vok && ok.proto, v.join(path, ".health.forwarding_check"))
	}
	s.Advertise = v.advertise(r.Advertise, v.join(path, ".advertise"), announce)
	if vok && announce == AnnounceBGP && bgp != nil && len(bgp.Peers) > 0 {
		carried := false
		for _, p := range bgp.Peers {
			carried = carried || vip.Is4() && p.IPv4 || vip.Is6() && p.IPv6
		}
		if !carried {
			fam := map[bool]string{true: "ipv4", false: "ipv6"}[vip.Is4()]
			v.errf(v.join(path, ".vip"), "no BGP peer carries %s, so %s can never be announced", fam, vip).
				hintf("add %s to a peer's families, or add a peer with an %s address", fam, fam)
		}
	}
	return s, ok
}

// flags validates scheduler flags against the scheduler.
func (v *validator) flags(fs []*string, path, sched string, schedOK bool) []string {
	if fs == nil {
		return defaultSchedulerFlags(sched)
	}
	var out []string
	if len(fs) > 0 {
		out = make([]string, 0, len(fs))
	}
	valid := schedulerFlags(sched)
	for i, f := range fs {
		// at is the flag's path, built only for a message.
		at := func() string { return indexPath(path, i) }
		if f == nil || *f == "" {
			v.missing(at(), "empty scheduler flag")
			continue
		}
		switch {
		case !slices.Contains(schedulerFlags("sh"), *f) && !slices.Contains(schedulerFlags("mh"), *f):
			v.errf(at(), "unknown scheduler flag %q", *f).hintf(flagsHint)
			continue
		case schedOK && !slices.Contains(valid, *f):
			v.errf(at(), "flag %q does not fit scheduler %q", *f, sched).hintf(flagsHint)
			continue
		case slices.Contains(out, *f):
			v.errf(at(), "flag %q is listed twice", *f)
			continue
		}
		out = append(out, *f)
	}
	return out
}

const flagsHint = "sh takes sh-fallback, sh-port; mh takes mh-fallback, mh-port; the other schedulers take none"

// backends validates a service's backends against the service and every VIP.
func (v *validator) backends(rbs []*rawBackend, path string, s *Service, ok validity, vips map[netip.Addr]string) []Backend {
	local := s.Forwarding == ForwardLocal
	if len(rbs) == 0 && !local {
		v.missing(v.join(path, ".backends"), "a %s service needs at least one backend", s.Forwarding).
			hintf("add backends, or use forwarding: local if a process on this director serves the VIP")
		return nil
	}
	if len(rbs) == 0 {
		return nil
	}
	out := make([]Backend, 0, len(rbs))
	seen := make(map[netip.AddrPort]string, len(rbs))
	paths := backendPaths(v.join(path, ".backends"), len(rbs))
	for j, rb := range rbs {
		bp := paths[j]
		if rb == nil {
			v.missing(bp.item, "empty backend").hintf("remove the lone '-' or fill in address")
			continue
		}
		b := Backend{Port: s.Port, Weight: DefaultWeight}
		addr, aok := v.requiredAddr(rb.Address, bp.address, "real server's address")
		if aok {
			switch first, isVIP := vips[addr]; {
			case addr.IsUnspecified() || addr.IsMulticast():
				v.errf(bp.address, "%s is not a unicast address", addr)
			case isVIP && !(local && addr == s.VIP):
				v.errf(bp.address, "%s is a VIP (%s), not a real server", addr, v.lineRef(first)).
					hintf("a backend must be a real server's own address; the VIP sits on its loopback")
			case ok.vip && !local && addr.Is4() != s.VIP.Is4():
				v.errf(bp.address, "%s is not of the same address family as the VIP %s", addr, s.VIP).
					hintf("IPVS cannot forward between IPv4 and IPv6; add a service with a VIP of that family")
			}
		}
		b.Address = addr
		if p, pok := v.integer(rb.Port, bp.port, int64(s.Port), 1, 65535); pok {
			b.Port = uint16(p)
			if ok.port && b.Port != s.Port && (s.Forwarding == ForwardDR || s.Forwarding == ForwardTunnel) {
				v.errf(bp.port, "port %d differs from the service port %d, which %s forwarding cannot do", b.Port, s.Port, s.Forwarding).
					hintf("%s delivers packets unchanged: make the real server listen on %d, or use forwarding: nat", s.Forwarding, s.Port)
			}
		}
		w, _ := v.integer(rb.Weight, bp.weight, DefaultWeight, 0, maxWeight)
		b.Weight = int(w)
		if aok {
			ap := netip.AddrPortFrom(addr, b.Port)
			if first, dup := seen[ap]; dup {
				v.errf(bp.address, "backend %s is listed twice (first at %s)", ap, v.lineRef(first))
			}
			seen[ap] = bp.item
		}
		out = append(out, b)
	}
	return out
}

// backendPath holds the field paths of one backend.
type backendPath struct{ item, address, port, weight string }

// backendPaths returns the paths of n backends under list
// ("services[0].backends"), cut from one string: four strings per backend
// were most of validation's allocations.
func backendPaths(list string, n int) []backendPath {
	const fields = len(".address") + len(".port") + len(".weight")
	// itemLen is the length of list[j].
	itemLen := func(j int) int {
		var digits [20]byte
		return len(list) + len(strconv.AppendInt(digits[:0], int64(j), 10)) + 2
	}
	size := 0
	for j := range n {
		size += 3*itemLen(j) + fields
	}
	var b strings.Builder
	b.Grow(size)
	var num [24]byte
	for j := range n {
		item := append(strconv.AppendInt(append(num[:0], '['), int64(j), 10), ']')
		for _, field := range [...]string{".address", ".port", ".weight"} {
			b.WriteString(list)
			b.Write(item)
			b.WriteString(field)
		}
	}
	all := b.String()
	out := make([]backendPath, n)
	at := 0
	for j := range out {
		l := itemLen(j)
		address, port := at+l+len(".address"), at+2*l+len(".address.port")
		out[j] = backendPath{item: all[at : at+l], address: all[at:address],
			port: all[address:port], weight: all[port : port+l+len(".weight")]}
		at = port + l + len(".weight")
	}
	return out
}

// minHealthy validates min_healthy against the number of health targets.
func (v *validator) minHealthy(p *int64, path string, s *Service) {
	s.MinHealthy = DefaultMinHealthy
	if p != nil {
		s.MinHealthy = int(max(min(*p, math.MaxInt32), math.MinInt32))
	}
	targets := len(s.HealthTargets())
	switch {
	case s.MinHealthy < 0:
		v.errf(v.join(path, ".min_healthy"), "%d is negative", s.MinHealthy)
	case targets == 0:
		// Reported already: a non-local service without backends.
	case s.MinHealthy > targets:
		e := v.errf(v.join(path, ".min_healthy"), "%d is more than the %d health targets, so the VIP could never be announced", s.MinHealthy, targets)
		if p == nil {
			e.hintf("the default is %d", DefaultMinHealthy)
		}
	}
}

// sharedAdvertise checks that services sharing a VIP agree on its route
// attributes: the VIP is one route, announced once.
func (v *validator) sharedAdvertise(shared map[netip.Addr]vipShare, s Service, path string, explicit bool) {
	first, seen := shared[s.VIP]
	if !seen {
		shared[s.VIP] = vipShare{path: path, advertise: s.Advertise, explicit: explicit}
		return
	}
	if advertiseKey(first.advertise) == advertiseKey(s.Advertise) {
		return
	}
	where, other := v.join(path, ".advertise"), first.path+".advertise"
	if !explicit {
		where = v.join(path, ".vip")
	}
	if !first.explicit {
		other = first.path
	}
	v.errf(where, "services sharing the VIP %s announce it differently from %s", s.VIP, v.lineRef(other)).
		hintf("a VIP is one route: give every service of %s the same advertise block (a YAML anchor helps)", s.VIP)
}

func advertiseKey(a Advertise) string {
	med := func(p *uint32) string {
		if p == nil {
			return "-"
		}
		return strconv.FormatUint(uint64(*p), 10)
	}
	return fmt.Sprint(a.Communities, a.LargeCommunities, med(a.MED), med(a.ShutdownMED), a.ASPathPrepend)
}

// advertise validates the route attributes of a VIP.
func (v *validator) advertise(a *rawAdvertise, path string, announce Announce) Advertise {
	out := Advertise{}
	if a == nil {
		return out
	}
	if announce != AnnounceBGP {
		v.warnf(path, "advertise is ignored: director.announce is %s", announce)
	}
	for i, c := range a.Communities {
		cp := indexPath(v.join(path, ".communities"), i)
		parts, ok := v.community(c, cp, 2, "ASN:value, e.g. 65100:100", math.MaxUint16)
		if !ok {
			continue
		}
		val := parts[0]<<16 | parts[1]
		if val == 0xFFFF0000 {
			v.errf(cp, "65535:0 is GRACEFUL_SHUTDOWN, which the director adds itself during a graceful shutdown")
			continue
		}
		if slices.Contains(out.Communities, val) {
			v.errf(cp, "community %s is listed twice", *c)
			continue
		}
		out.Communities = append(out.Communities, val)
	}
	for i, c := range a.LargeCommunities {
		cp := indexPath(v.join(path, ".large_communities"), i)
		parts, ok := v.community(c, cp, 3, "ASN:value1:value2, e.g. 65100:1:2", math.MaxUint32)
		if !ok {
			continue
		}
		lc := [3]uint32{parts[0], parts[1], parts[2]}
		if slices.Contains(out.LargeCommunities, lc) {
			v.errf(cp, "large community %s is listed twice", *c)
			continue
		}
		out.LargeCommunities = append(out.LargeCommunities, lc)
	}
	if a.MED != nil {
		if m, ok := v.integer(a.MED, v.join(path, ".med"), 0, 0, math.MaxUint32); ok {
			med := uint32(m)
			out.MED = &med
		}
	}
	if a.ShutdownMED != nil {
		if m, ok := v.integer(a.ShutdownMED, v.join(path, ".shutdown_med"), 0, 0, math.MaxUint32); ok {
			med := uint32(m)
			out.ShutdownMED = &med
		}
	}
	n, _ := v.integer(a.ASPathPrepend, v.join(path, ".as_path_prepend"), 0, 0, maxASPathPrepend)
	out.ASPathPrepend = int(n)
	return out
}

// community parses n colon-separated numbers, each at most max.
func (v *validator) community(c *string, path string, n int, form string, limit uint64) ([]uint32, bool) {
	if c == nil {
		v.missing(path, "empty community").hintf("write %s", form)
		return nil, false
	}
	fields := strings.Split(*c, ":")
	if len(fields) != n {
		v.errf(path, "%q is not a community", *c).hintf("write %s", form)
		return nil, false
	}
	out := make([]uint32, n)
	for i, f := range fields {
		x, err := strconv.ParseUint(f, 10, 64)
		if err != nil || x > limit {
			v.errf(path, "%q is not a community: %q is not a number in 0..%d", *c, f, limit).hintf("write %s", form)
			return nil, false
		}
		out[i] = uint32(x)
	}
	return out, true
}

// forwardingCheck rejects a forwarding check the service cannot have: it
// sends a TCP handshake to an IPv4 VIP the way direct routing or IP-in-IP
// deliver it. known says the VIP and protocol parsed.
func (v *validator) forwardingCheck(s Service, known bool, path string) {
	switch {
	case s.Forwarding != ForwardDR && s.Forwarding != ForwardTunnel:
		v.errf(path, "a forwarding check needs forwarding dr or tunnel, not %s", s.Forwarding).
			hintf("with nat and local the ordinary check already takes the path traffic takes; remove forwarding_check")
	case !known:
	case s.Protocol != TCP:
		v.errf(path, "a forwarding check sends a TCP handshake; service %s is %s", s.Name, s.Protocol).
			hintf("remove forwarding_check from UDP services")
	case !s.VIP.Is4():
		v.errf(path, "a forwarding check supports IPv4 VIPs only, not %s", s.VIP).
			hintf("remove forwarding_check; IPv6 is not supported yet")
	}
}
