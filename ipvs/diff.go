package ipvs

import (
	"cmp"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// OpKind says which IPVS write an Op is.
type OpKind int

const (
	// OpCreateService adds a virtual service (IPVS_CMD_NEW_SERVICE).
	OpCreateService OpKind = iota + 1
	// OpUpdateService changes scheduler, flags or persistence in place
	// (IPVS_CMD_SET_SERVICE); connections are kept.
	OpUpdateService
	// OpDeleteService removes a virtual service and its destinations.
	OpDeleteService
	// OpAddDestination adds a real server at the head of the service's list.
	OpAddDestination
	// OpUpdateDestination changes weight or forwarding in place.
	OpUpdateDestination
	// OpDeleteDestination removes a real server (the kernel keeps it in its
	// trash while connections reference it).
	OpDeleteDestination
)

// String returns the verb used in plans and logs.
func (k OpKind) String() string {
	switch k {
	case OpCreateService:
		return "create service"
	case OpUpdateService:
		return "update service"
	case OpDeleteService:
		return "delete service"
	case OpAddDestination:
		return "add destination"
	case OpUpdateDestination:
		return "update destination"
	case OpDeleteDestination:
		return "delete destination"
	}
	return fmt.Sprintf("op(%d)", int(k))
}

// Op is one IPVS write, with everything needed to execute it and to print it
// in a dry-run plan.
type Op struct {
	// Kind is the write.
	Kind OpKind
	// Service is the desired service for create and update (without
	// destinations) and the observed one for delete; destination ops use its
	// Key only.
	Service Service
	// Destination is the destination written (Weight is the weight sent to
	// the kernel: 0 for a draining one) or deleted.
	Destination Destination
	// Reason says why, for plans and logs ("new", "weight 1 -> 2",
	// "canonical order", "drained").
	Reason string
}

// String formats the op for a plan, one line, e.g.
// "add destination tcp/198.18.0.10:80 -> 10.0.2.21:80 dr weight 1 (new)".
func (o Op) String() string {
	var b strings.Builder
	b.WriteString(o.Kind.String())
	b.WriteByte(' ')
	b.WriteString(o.Service.Key.String())
	switch o.Kind {
	case OpCreateService, OpUpdateService:
		fmt.Fprintf(&b, " scheduler %s", o.Service.Scheduler)
		if len(o.Service.Flags) > 0 {
			fmt.Fprintf(&b, " flags %s", strings.Join(o.Service.Flags, ","))
		}
		if o.Service.Persistence > 0 {
			fmt.Fprintf(&b, " persistence %s", o.Service.Persistence)
		}
	case OpAddDestination, OpUpdateDestination:
		d := o.Destination
		fmt.Fprintf(&b, " -> %s %s weight %d", netip.AddrPortFrom(d.Address, d.Port), d.Forwarding, d.Weight)
	case OpDeleteDestination:
		fmt.Fprintf(&b, " -> %s", netip.AddrPortFrom(o.Destination.Address, o.Destination.Port))
	}
	if o.Reason != "" {
		fmt.Fprintf(&b, " (%s)", o.Reason)
	}
	return b.String()
}

// maxWeight is the largest weight that reads back intact: the kernel's weight
// is an int, but moby/ipvs decodes it as 16 bits (ipvsadm has the same limit).
const maxWeight = 65535

// maxPersistence bounds the persistence timeout (seconds fit the kernel's u32
// and HZ multiplication).
const maxPersistence = 24 * 365 * time.Hour

// Validate reports every reason why s cannot be programmed, at once. Diff
// skips invalid services and Apply reports them as failed without touching
// what the kernel holds for their key.
func Validate(s Service) error {
	var errs []error
	k := s.Key
	if !k.VIP.IsValid() {
		errs = append(errs, errors.New("vip: missing address"))
	} else if k.VIP.Zone() != "" || k.VIP.Is4In6() {
		errs = append(errs, fmt.Errorf("vip %s: use a plain IPv4 or IPv6 address without zone", k.VIP))
	}
	switch k.Protocol {
	case 6, 17, 132:
	default:
		errs = append(errs, fmt.Errorf("protocol %d: IPVS services need tcp (6), udp (17) or sctp (132)", k.Protocol))
	}
	if s.Scheduler == "" {
		errs = append(errs, errors.New("scheduler: empty (use mh, wlc, rr, ...)"))
	}
	if _, err := FlagBits(s.Scheduler, s.Flags); err != nil {
		errs = append(errs, fmt.Errorf("flags: %w", err))
	}
	if slices.Contains(s.Flags, "ops") && k.Protocol != 17 {
		errs = append(errs, errors.New("flags: ops (one-packet scheduling) is for udp services only"))
	}
	if s.Persistence < 0 || s.Persistence > maxPersistence || s.Persistence%time.Second != 0 {
		errs = append(errs, fmt.Errorf("persistence %s: must be whole seconds between 0 and %s", s.Persistence, maxPersistence))
	}
	seen := newDestIndex(s.Destinations)
	for i, d := range s.Destinations {
		ap := netip.AddrPortFrom(d.Address, d.Port)
		switch {
		case !d.Address.IsValid():
			errs = append(errs, fmt.Errorf("destinations[%d]: missing address", i))
			continue
		case d.Address.Zone() != "" || d.Address.Is4In6():
			errs = append(errs, fmt.Errorf("destinations[%d] %s: use a plain IPv4 or IPv6 address without zone", i, ap))
		case k.VIP.IsValid() && d.Address.Is4() != k.VIP.Is4():
			errs = append(errs, fmt.Errorf("destinations[%d] %s: address family differs from vip %s", i, ap, k.VIP))
		}
		if j := seen.find(ap); j >= 0 && j != i {
			errs = append(errs, fmt.Errorf("destinations[%d] %s: listed twice", i, ap))
		}
		if d.Weight < 0 || d.Weight > maxWeight {
			errs = append(errs, fmt.Errorf("destinations[%d] %s: weight %d outside 0..%d", i, ap, d.Weight, maxWeight))
		}
		switch d.Forwarding {
		case DirectRoute, Masquerade, Tunnel:
		default:
			errs = append(errs, fmt.Errorf("destinations[%d] %s: forwarding %s: use dr, nat or tunnel", i, ap, d.Forwarding))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("service %s: %w", k, err)
	}
	return nil
}

// Diff returns the writes that turn have (what the kernel holds, destinations
// in kernel list order) into want, service by service in key order. It is
// pure: Apply runs it and a dry run prints it.
//
// Services only in have are deleted: pass only the services the
// configuration owns. Services that fail Validate produce no ops at all, so a
// bad entry never deletes a working service. Destinations are kept in the
// canonical order (see SortCanonical); a draining destination is held at
// weight 0 and deleted once Destination.Drained says so at now, given its
// connections in have.
func Diff(want, have []Service, now time.Time) []Op {
	wantByKey := make(map[Key]*Service, len(want))
	for i := range want {
		wantByKey[want[i].Key] = &want[i]
	}
	haveByKey := make(map[Key]*Service, len(have))
	for i := range have {
		haveByKey[have[i].Key] = &have[i]
	}
	keys := make([]Key, 0, len(wantByKey)+len(haveByKey))
	for k := range wantByKey {
		keys = append(keys, k)
	}
	for k := range haveByKey {
		if wantByKey[k] == nil {
			keys = append(keys, k)
		}
	}
	slices.SortFunc(keys, Key.Compare)
	var ops []Op
	for _, k := range keys {
		w := wantByKey[k]
		if w != nil && Validate(*w) != nil {
			continue
		}
		ops = append(ops, DiffService(w, haveByKey[k], now)...)
	}
	return ops
}

// DiffService diffs one key, as Diff does; nil means absent. want must be
// valid.
func DiffService(want, have *Service, now time.Time) []Op {
	if want == nil {
		if have == nil {
			return nil
		}
		return []Op{{Kind: OpDeleteService, Service: header(*have), Reason: "not in configuration"}}
	}
	if have == nil {
		return createService(want, now)
	}
	var ops []Op
	if why := serviceChange(*want, *have); why != "" {
		ops = append(ops, Op{Kind: OpUpdateService, Service: header(*want), Reason: why})
	}
	return append(ops, diffDestinations(want.Key, want.Destinations, have.Destinations, now)...)
}

// createService plans a new service with its destinations.
func createService(want *Service, now time.Time) []Op {
	create := Op{Kind: OpCreateService, Service: header(*want), Reason: "new"}
	adds := diffDestinations(want.Key, want.Destinations, nil, now)
	if !tableScheduler(want.Scheduler) || len(adds) < 2 {
		return append([]Op{create}, adds...)
	}
	// The kernel rebuilds an mh table (4093 slots) on every destination
	// change: create the service without a scheduler, add the
	// destinations, then bind the scheduler, which builds the table once
	// from the same list. Until then the new service schedules nothing.
	create.Service.Scheduler = noScheduler
	create.Service.Flags = FlagNames(noScheduler, mustFlagBits(want))
	create.Reason = "new; scheduler " + want.Scheduler + " bound after the destinations"
	ops := append([]Op{create}, adds...)
	return append(ops, Op{Kind: OpUpdateService, Service: header(*want), Reason: "bind scheduler " + want.Scheduler + ": one table build"})
}

// noScheduler is the kernel's name for a service without a scheduler.
const noScheduler = "none"

// tableScheduler reports schedulers whose lookup table the kernel rebuilds
// on every destination change, and which are expensive to build.
func tableScheduler(name string) bool { return name == "mh" }

// mustFlagBits is FlagBits of a validated service.
func mustFlagBits(s *Service) uint32 {
	bits, _ := FlagBits(s.Scheduler, s.Flags)
	return bits
}

// header is s without destinations and with canonical flags, as sent in
// service writes.
func header(s Service) Service {
	bits, _ := FlagBits(s.Scheduler, s.Flags)
	return Service{Key: s.Key, Scheduler: s.Scheduler, Flags: FlagNames(s.Scheduler, bits), Persistence: s.Persistence}
}

// serviceChange says what differs between the desired and the observed
// service attributes, or "" when nothing does.
func serviceChange(want, have Service) string {
	var why []string
	if want.Scheduler != have.Scheduler {
		why = append(why, fmt.Sprintf("scheduler %s -> %s", have.Scheduler, want.Scheduler))
	}
	wb, _ := FlagBits(want.Scheduler, want.Flags)
	hb, _ := FlagBits(have.Scheduler, have.Flags)
	if wb != hb {
		why = append(why, fmt.Sprintf("flags [%s] -> [%s]", strings.Join(FlagNames(have.Scheduler, hb), ","), strings.Join(FlagNames(want.Scheduler, wb), ",")))
	}
	if want.Persistence != have.Persistence {
		why = append(why, fmt.Sprintf("persistence %s -> %s", have.Persistence, want.Persistence))
	}
	return strings.Join(why, ", ")
}

// compareCanonical is the canonical kernel list order: descending by
// address, then port. The kernel inserts at the head, so Apply adds
// destinations in ascending order and the list reads descending.
func compareCanonical(a, b Destination) int {
	if c := b.Address.Compare(a.Address); c != 0 {
		return c
	}
	return cmp.Compare(b.Port, a.Port)
}

// SortCanonical sorts ds into the order the kernel list must have. The order
// depends on the set of destinations alone, so every director with the same
// backends builds the same mh (and sh) table whatever its history. The
// announcer's plan lists destinations in this order too, so a settled
// service compares with the kernel's list position by position.
func SortCanonical(ds []Destination) {
	slices.SortFunc(ds, compareCanonical)
}

// IsCanonical reports whether ds is in canonical order.
func IsCanonical(ds []Destination) bool {
	return slices.IsSortedFunc(ds, compareCanonical)
}

// diffDestinations plans the destination writes of one service. have is in
// kernel list order. The kernel only inserts at the head, so the plan keeps
// the longest tail of the canonical order that the kernel already holds in
// the right relative order and re-inserts everything before it, one
// destination at a time (delete, then add) from the tail towards the head.
// A destination deleted with connections goes to the kernel's trash and the
// add takes it back with its connections (ip_vs_trash_get_dest), so
// reordering does not break flows as long as expire_nodest_conn is 0.
func diffDestinations(key Key, want, have []Destination, now time.Time) []Op {
	havePos := newDestIndex(have)
	keep := keptDestinations(want, have, havePos, now)
	svc := Service{Key: key}
	ops := deleteUnkept(svc, want, have, keep, now)
	// Longest tail of keep already in kernel order: positions must increase.
	split := len(keep)
	next := len(have)
	for split > 0 {
		p := havePos.find(keep[split-1].AddrPort())
		if p < 0 || p >= next {
			break
		}
		next = p
		split--
	}
	for _, w := range keep[split:] {
		h := have[havePos.find(w.AddrPort())]
		if why := destChange(w, h); why != "" {
			ops = append(ops, Op{Kind: OpUpdateDestination, Service: svc, Destination: w, Reason: why})
		}
	}
	for i := split - 1; i >= 0; i-- {
		w := keep[i]
		why := "new"
		if havePos.find(w.AddrPort()) >= 0 {
			ops = append(ops, Op{Kind: OpDeleteDestination, Service: svc, Destination: w, Reason: "canonical order"})
			why = "canonical order"
		}
		if w.Draining {
			why += ", draining"
		}
		ops = append(ops, Op{Kind: OpAddDestination, Service: svc, Destination: w, Reason: why})
	}
	return ops
}

// keptDestinations returns the destinations of want that stay in the
// kernel, in canonical order: a draining one only while the kernel still
// has it and Drained does not end it, at weight 0.
func keptDestinations(want, have []Destination, havePos destIndex, now time.Time) []Destination {
	keep := make([]Destination, 0, len(want))
	for _, w := range want {
		if w.Draining {
			i := havePos.find(w.AddrPort())
			if i < 0 || w.Drained(have[i].Conns, now) != "" {
				continue // nothing left to drain, or drained: deleted below
			}
			w.Weight = 0
		}
		w.Conns = Conns{}
		keep = append(keep, w)
	}
	SortCanonical(keep)
	return keep
}

// deleteUnkept plans the deletion of the kernel's destinations that keep
// does not list, with the reason.
func deleteUnkept(svc Service, want, have, keep []Destination, now time.Time) []Op {
	keepSet := newDestIndex(keep)
	wantIdx := newDestIndex(want)
	var ops []Op
	for _, h := range have {
		if keepSet.find(h.AddrPort()) >= 0 {
			continue
		}
		why := "not in configuration"
		if i := wantIdx.find(h.AddrPort()); i >= 0 {
			why = want[i].Drained(h.Conns, now)
		}
		ops = append(ops, Op{Kind: OpDeleteDestination, Service: svc, Destination: h, Reason: why})
	}
	return ops
}

// destChange says what differs between a desired and an observed
// destination, or "".
func destChange(want, have Destination) string {
	var why []string
	if want.Weight != have.Weight {
		w := fmt.Sprintf("weight %d -> %d", have.Weight, want.Weight)
		if want.Draining {
			w += " (draining)"
		}
		why = append(why, w)
	}
	if want.Forwarding != have.Forwarding {
		why = append(why, fmt.Sprintf("forwarding %s -> %s", have.Forwarding, want.Forwarding))
	}
	return strings.Join(why, ", ")
}

// destIndex finds a destination by address and port: a linear scan over the
// handful of destinations a service usually has (no allocation: Diff runs for
// every service on a full read), a map for long lists.
type destIndex struct {
	ds []Destination
	m  map[netip.AddrPort]int
}

func newDestIndex(ds []Destination) destIndex {
	x := destIndex{ds: ds}
	if len(ds) > 32 {
		x.m = make(map[netip.AddrPort]int, len(ds))
		for i, d := range ds {
			if _, dup := x.m[d.AddrPort()]; !dup {
				x.m[d.AddrPort()] = i // the first, like the linear scan
			}
		}
	}
	return x
}

// find returns the index of k, or -1.
func (x destIndex) find(k netip.AddrPort) int {
	if x.m != nil {
		if i, ok := x.m[k]; ok {
			return i
		}
		return -1
	}
	for i := range x.ds {
		if x.ds[i].Address == k.Addr() && x.ds[i].Port == k.Port() {
			return i
		}
	}
	return -1
}
