package dataplane

import (
	"context"
	"fmt"
	"slices"
	"unsafe"

	"github.com/anycast-director/director/ipvs"
)

// Report says what one Apply did.
type Report struct {
	// Ops counts the netlink writes issued (failed ones included); 0 means
	// the kernel already matched.
	Ops int
	// Reads counts the netlink read requests (one per service list dump and
	// one per destination list).
	Reads int
	// FullRead is true when Apply read every owned service back from the
	// kernel instead of trusting its record of earlier writes.
	FullRead bool
	// Failed holds, per service, why it could not be validated, read or
	// written. Other services are applied regardless.
	Failed map[ipvs.Key]error
	// Fingerprint is Fingerprint of every owned service as the kernel holds
	// it after Apply, for status and for comparing directors: an immutable
	// snapshot (Get, Len, Map).
	Fingerprint Fingerprints
}

// entry is Apply's record of one owned service. Its only record of the
// service's state is the kernel's view (have), kept up to date by every write
// and every read: Apply compares the desired state with it, so the desired
// state itself is kept once, by the caller.
type entry struct {
	key     ipvs.Key
	gone    bool         // deleted from Handle.entries
	exists  bool         // the kernel has the service
	have    ipvs.Service // the kernel's view; destinations in kernel list order
	seen    uint64       // the last Apply (epoch) whose desired state listed the key
	wantIdx int          // its index in that desired state
	dup     bool         // that desired state listed the key twice
	// trusted says have is what the kernel held after this handle's last
	// read or writes: a full read that finds something else found drift.
	// A failed write or read clears it until the next full read.
	trusted bool
	// suspect says a read or write of this service failed while it was
	// trusted (a flush between two full reads makes the next pass's read
	// fail first): the next full read still reports what changed as drift.
	suspect bool
}

// distrust clears trusted after a failed read or write, remembering that
// the failure may be the first sign of drift.
func (e *entry) distrust() {
	if e.trusted {
		e.suspect = true
	}
	e.trusted = false
}

// Apply makes the kernel's IPVS services match want and returns what it did.
//
// It touches only owned services: the keys in want plus keys it applied
// before, so a service dropped from want is deleted; other services in the
// namespace are never written, deleted or flushed. On the first call (and
// every resync interval, after any failure, and when want has a key it has
// not seen) it reads the owned services from the kernel (the netlink service
// dump plus one read of /proc/net/ip_vs) and diffs against them, so a
// restarted daemon adopts existing services and their connections instead of
// re-creating them; services the kernel already holds as desired are not
// diffed. In between it trusts its record of the kernel (what it read and
// wrote since): services that differ from want are written from the record,
// read first only when draining, being deleted or distrusted after a
// failure, and read after a write the kernel refuses (flush). The writes of
// many services go to the kernel together (writeBatch). A no-op Apply
// therefore costs one comparison per service and no netlink request; when
// want lists the same keys in the same order as the last call, with
// destinations in canonical order (as the announcer's plan does), that
// comparison runs position by position with no bookkeeping at all.
//
// A service that fails (invalid, unreadable, or a write rejected) is reported
// in Report.Failed and the others proceed. The error is only for failures
// that stop everything: a closed handle, a cancelled context, or the service
// list being unreadable.
func (h *Handle) Apply(ctx context.Context, want []ipvs.Service) (Report, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rep := Report{Failed: make(map[ipvs.Key]error)}
	if err := h.usable(ctx); err != nil {
		return rep, err
	}
	h.epoch++
	now := h.cfg.now()
	full := h.needFull || now.Sub(h.lastFull) >= h.cfg.resync
	if !full {
		if work, ok := h.samePositions(want); ok {
			err := h.applyWork(ctx, want, work, false, now, &rep)
			return h.finish(rep), err
		}
	}
	work, seen, newKey := h.markWanted(want, &rep)
	var skip map[ipvs.Key]bool // unreadable this round
	var drift map[ipvs.Key]string
	if full || newKey {
		// A new key: adopt or create, the kernel may have it already.
		full = true
		var err error
		if skip, drift, err = h.fullRead(ctx, &rep); err != nil {
			h.needFull = true
			return h.finish(rep), err
		}
		work = h.outdated(want)
	}
	h.needFull = false
	work = h.addDropped(work, seen, skip)
	err := h.applyWork(ctx, want, work, full, now, &rep)
	h.reportDrift(drift, &rep)
	return h.finish(rep), err
}

// markWanted records which entries this desired state lists, in its order,
// creating entries for new keys (newKey). It returns the keys whose desired
// state differs from Apply's record of the kernel, and how many entries want
// lists; a key listed twice is reported failed.
func (h *Handle) markWanted(want []ipvs.Service, rep *Report) (changed []ipvs.Key, seen int, newKey bool) {
	prevLen := len(h.order)
	order := h.order
	if cap(order) < len(want) {
		order = make([]*entry, len(want))
		copy(order, h.order)
	}
	order = order[:len(want)]
	for i := range want {
		k := want[i].Key
		var e *entry
		// The entry at the same index last time is tried before the map:
		// callers usually pass services in a stable order.
		if c := order[i]; i < prevLen && c != nil && !c.gone && c.key == k {
			e = c
		} else if e = h.entries[k]; e == nil {
			e = &entry{key: k}
			h.entries[k] = e
			newKey = true
		}
		if e.seen == h.epoch {
			e.dup = true
			rep.Failed[k] = fmt.Errorf("service %s: listed twice in the desired state", k)
			order[i] = nil
			continue
		}
		e.seen, e.wantIdx, e.dup = h.epoch, i, false
		order[i] = e
		seen++
		if !current(&want[i], e) {
			changed = append(changed, k)
		}
	}
	h.order = order
	return changed, seen, newKey
}

// outdated lists, after a full read, the wanted keys the kernel does not
// hold as desired.
func (h *Handle) outdated(want []ipvs.Service) []ipvs.Key {
	var work []ipvs.Key
	for i, e := range h.order {
		if e != nil && !current(&want[i], e) {
			work = append(work, e.key)
		}
	}
	return work
}

// addDropped completes the work: without keys listed twice or unreadable
// this round (skip), plus the owned keys want no longer lists (seen counts
// those it lists), which are deleted; sorted by key.
func (h *Handle) addDropped(work []ipvs.Key, seen int, skip map[ipvs.Key]bool) []ipvs.Key {
	work = slices.DeleteFunc(work, func(k ipvs.Key) bool { e := h.entries[k]; return e.dup || skip[k] })
	if seen < len(h.entries) {
		for k, e := range h.entries {
			if e.seen != h.epoch && !skip[k] {
				work = append(work, k)
			}
		}
	}
	slices.SortFunc(work, ipvs.Key.Compare)
	return work
}

// samePositions is the no-op Apply's fast path: when want lists exactly the
// keys of the last Apply in the same order (so none is new, dropped or
// repeated), it returns the keys whose desired state the kernel does not hold
// yet, marked for applyWork, and true. Otherwise it returns false having
// changed nothing, and Apply takes the general path.
func (h *Handle) samePositions(want []ipvs.Service) ([]ipvs.Key, bool) {
	if len(want) != len(h.order) || len(want) != len(h.entries) {
		return nil, false
	}
	var changed []int
	for i := range want {
		e := h.order[i]
		if e == nil || e.key != want[i].Key {
			return nil, false
		}
		if !current(&want[i], e) {
			changed = append(changed, i)
		}
	}
	keys := make([]ipvs.Key, len(changed))
	for j, i := range changed {
		e := h.order[i]
		e.seen, e.wantIdx, e.dup = h.epoch, i, false
		keys[j] = e.key
	}
	slices.SortFunc(keys, ipvs.Key.Compare)
	return keys, true
}

// finish publishes the fingerprints. The snapshot is shared with the handle
// and copied shard by shard before the handle changes it, so a no-op Apply
// copies nothing and a single change copies one shard.
func (h *Handle) finish(rep Report) Report {
	rep.Fingerprint = h.fps.publish()
	return rep
}

// setFingerprint records fp for k ("" removes it).
func (h *Handle) setFingerprint(k ipvs.Key, fp string) { h.fps.set(k, fp) }

// fullRead refreshes every entry from the kernel. Services whose
// destinations cannot be read are reported failed and returned in skip;
// trusted entries the kernel no longer holds as recorded are returned in
// drift, with what changed.
func (h *Handle) fullRead(ctx context.Context, rep *Report) (skip map[ipvs.Key]bool, drift map[ipvs.Key]string, err error) {
	rep.FullRead = true
	have, reads, failed, err := h.read(ctx, func(k ipvs.Key) bool { return h.entries[k] != nil })
	rep.Reads += reads
	if err != nil {
		return nil, nil, err
	}
	haveBy := make(map[ipvs.Key]*ipvs.Service, len(have))
	for i := range have {
		haveBy[have[i].Key] = &have[i]
	}
	for k, e := range h.entries {
		if err := failed[k]; err != nil {
			rep.Failed[k] = err
			if skip == nil {
				skip = make(map[ipvs.Key]bool)
			}
			skip[k] = true
			e.distrust()
			continue
		}
		fresh := haveBy[k]
		if e.exists != (fresh != nil) || (fresh != nil && !sameKernelView(&e.have, fresh)) {
			if e.trusted || e.suspect {
				if drift == nil {
					drift = make(map[ipvs.Key]string)
				}
				drift[k] = ipvs.DescribeDrift(e.view(), fresh)
			}
			e.exists = fresh != nil // not what Apply left
			e.have = ipvs.Service{}
			if fresh != nil {
				e.have = *fresh
			}
			h.refreshFingerprint(k, e)
		} else if fresh != nil {
			e.have.Destinations = fresh.Destinations // current connection counts
		}
		e.trusted, e.suspect = true, false
	}
	h.lastFull = h.cfg.now()
	return skip, drift, nil
}

func (h *Handle) refreshFingerprint(k ipvs.Key, e *entry) {
	fp := ""
	if e.exists {
		fp = ipvs.Fingerprint(e.have)
	}
	h.setFingerprint(k, fp)
}

// record mirrors a successful write in the entry, the way the kernel applies
// it (new destinations go to the head of the list).
func (e *entry) record(op ipvs.Op) {
	switch op.Kind {
	case ipvs.OpCreateService:
		e.exists = true
		e.have = op.Service
		e.have.Destinations = nil
	case ipvs.OpUpdateService:
		ds := e.have.Destinations
		e.have = op.Service
		e.have.Destinations = ds
	case ipvs.OpDeleteService:
		e.exists = false
		e.have = ipvs.Service{}
	case ipvs.OpAddDestination:
		d := op.Destination
		d.Draining, d.Conns = false, ipvs.Conns{}
		e.have.Destinations = slices.Insert(e.have.Destinations, 0, d)
	case ipvs.OpUpdateDestination:
		for i := range e.have.Destinations {
			if e.have.Destinations[i].AddrPort() == op.Destination.AddrPort() {
				e.have.Destinations[i].Weight = op.Destination.Weight
				e.have.Destinations[i].Forwarding = op.Destination.Forwarding
			}
		}
	case ipvs.OpDeleteDestination:
		e.have.Destinations = slices.DeleteFunc(e.have.Destinations, func(d ipvs.Destination) bool {
			return d.AddrPort() == op.Destination.AddrPort()
		})
	}
}

// current reports whether the kernel, as Apply's record has it, already
// holds want, so there is nothing to diff: the service exists with the same
// attributes and the same destinations and weights, in canonical order, and
// none is draining (those are re-read and diffed until they are gone). It
// runs for every service on every Apply: it is what a no-op Apply costs.
func current(want *ipvs.Service, e *entry) bool {
	have := &e.have
	if !e.exists || !sameString(want.Scheduler, have.Scheduler) || want.Persistence != have.Persistence ||
		len(want.Destinations) != len(have.Destinations) || !sameFlags(want, have) {
		return false
	}
	inOrder := true
	for i := range want.Destinations {
		x, y := &want.Destinations[i], &have.Destinations[i]
		if x.Draining {
			return false
		}
		if x.Address != y.Address || x.Port != y.Port || x.Weight != y.Weight || x.Forwarding != y.Forwarding {
			inOrder = false
		}
	}
	canonical := ipvs.IsCanonical(want.Destinations)
	if inOrder {
		return canonical
	}
	// A caller that does not list destinations in canonical order pays for
	// a sorted copy.
	if canonical {
		return false
	}
	sorted := slices.Clone(want.Destinations)
	ipvs.SortCanonical(sorted)
	return current(&ipvs.Service{Scheduler: want.Scheduler, Flags: want.Flags, Persistence: want.Persistence, Destinations: sorted}, e)
}

// sameFlags reports whether two services of the same scheduler have the same
// flags, however the names are ordered.
func sameFlags(a, b *ipvs.Service) bool {
	if sameStrings(a.Flags, b.Flags) {
		return true
	}
	ab, aerr := ipvs.FlagBits(a.Scheduler, a.Flags)
	bb, berr := ipvs.FlagBits(b.Scheduler, b.Flags)
	return aerr == nil && berr == nil && ab == bb
}

// sameString is a == b, answered without comparing bytes when both share
// their backing array, as the record's copies of the caller's names do.
func sameString(a, b string) bool {
	return len(a) == len(b) && (unsafe.StringData(a) == unsafe.StringData(b) || a == b)
}

// sameStrings is slices.Equal with sameString.
func sameStrings(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if !sameString(a[i], b[i]) {
			return false
		}
	}
	return true
}

// sameKernelView reports whether two observed states of a service are the
// same apart from counters: what Apply recorded and what a full read found.
func sameKernelView(a, b *ipvs.Service) bool {
	if a.Scheduler != b.Scheduler || a.Persistence != b.Persistence ||
		!slices.Equal(a.Flags, b.Flags) || len(a.Destinations) != len(b.Destinations) {
		return false
	}
	for i := range a.Destinations {
		x, y := &a.Destinations[i], &b.Destinations[i]
		if x.Address != y.Address || x.Port != y.Port || x.Weight != y.Weight || x.Forwarding != y.Forwarding {
			return false
		}
	}
	return true
}
