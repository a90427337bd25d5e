package ipvs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"unsafe"
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
	Failed map[Key]error
	// Fingerprint is Fingerprint of every owned service as the kernel holds
	// it after Apply, for status and for comparing directors: an immutable
	// snapshot (Get, Len, Map).
	Fingerprint Fingerprints
}

// entry is Apply's record of one owned service.
type entry struct {
	key     Key
	gone    bool     // deleted from Handle.entries
	drains  bool     // applied has draining destinations: re-read every time
	exists  bool     // the kernel has the service
	have    Service  // the kernel's view; destinations in kernel list order
	applied *Service // the desired state last applied without error
	seen    uint64   // the last Apply (epoch) whose desired state listed the key
	wantIdx int      // its index in that desired state
	dup     bool     // that desired state listed the key twice
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
// re-creating them; services the kernel still holds as Apply left them are
// not diffed again. In between it diffs against its record of what it wrote,
// re-reading only services whose desired state changed or that have draining
// destinations. A no-op Apply therefore costs one comparison per service and
// no netlink request; when want lists the same keys in the same order as the
// last call (as the announcer's plan does) that comparison runs position by
// position with no bookkeeping at all.
//
// A service that fails (invalid, unreadable, or a write rejected) is reported
// in Report.Failed and the others proceed. The error is only for failures
// that stop everything: a closed handle, a cancelled context, or the service
// list being unreadable.
func (h *Handle) Apply(ctx context.Context, want []Service) (Report, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	rep := Report{Failed: make(map[Key]error)}
	if err := h.usable(ctx); err != nil {
		return rep, err
	}

	// Mark the keys of this desired state (unseen entries are dropped ones)
	// and note which services differ from what was last applied. The entry
	// at the same index last time is tried before the map: callers usually
	// pass services in a stable order, and this loop is all a no-op costs.
	h.epoch++
	full := h.needFull || h.cfg.now().Sub(h.lastFull) >= h.cfg.resync
	if !full {
		if changed, ok := h.samePositions(want); ok {
			err := h.applyWork(ctx, want, changed, false, &rep)
			return h.finish(rep), err
		}
	}
	prevLen := len(h.order)
	order := h.order
	if cap(order) < len(want) {
		order = make([]*entry, len(want))
		copy(order, h.order)
	}
	order = order[:len(want)]
	var changed []Key
	seen := 0
	for i := range want {
		k := want[i].Key
		var e *entry
		if c := order[i]; i < prevLen && c != nil && !c.gone && c.key == k {
			e = c
		} else if e = h.entries[k]; e == nil {
			e = &entry{key: k}
			h.entries[k] = e
			full = true // adopt or create: the kernel may have it already
		}
		if e.seen == h.epoch {
			e.dup = true
			rep.Failed[k] = fmt.Errorf("service %s: listed twice in the desired state", k)
			order[i] = nil
			continue
		}
		e.seen, e.wantIdx, e.dup = h.epoch, i, false
		if order[i] != e {
			order[i] = e
		}
		seen++
		if e.applied == nil || e.drains || !sameSpec(&want[i], e.applied) {
			changed = append(changed, k)
		}
	}
	h.order = order
	var skip map[Key]bool // unreadable this round
	if full {
		var err error
		if skip, err = h.fullRead(&rep); err != nil {
			h.needFull = true
			return h.finish(rep), err
		}
	}
	h.needFull = false

	// Diff the services whose desired state changed, that drain, or that
	// were dropped; after a full read also those the kernel no longer holds
	// as Apply left them.
	work := changed
	if full {
		work = work[:0]
		for i, e := range order {
			if e != nil && (e.applied == nil || e.drains || !sameSpec(&want[i], e.applied)) {
				work = append(work, e.key)
			}
		}
	}
	work = slices.DeleteFunc(work, func(k Key) bool { e := h.entries[k]; return e.dup || skip[k] })
	if seen < len(h.entries) {
		for k, e := range h.entries {
			if e.seen != h.epoch && !skip[k] {
				work = append(work, k)
			}
		}
	}
	slices.SortFunc(work, compareKeys)
	err := h.applyWork(ctx, want, work, full, &rep)
	return h.finish(rep), err
}

// samePositions is the no-op Apply's fast path: when want lists exactly the
// keys of the last Apply in the same order (so none is new, dropped or
// repeated), it returns the keys whose desired state differs from what was
// applied, marked for applyWork, and true. Otherwise it returns false
// having changed nothing, and Apply takes the general path.
func (h *Handle) samePositions(want []Service) ([]Key, bool) {
	if len(want) != len(h.order) || len(want) != len(h.entries) {
		return nil, false
	}
	var changed []int
	for i := range want {
		e := h.order[i]
		if e == nil || e.key != want[i].Key {
			return nil, false
		}
		if e.applied == nil || e.drains || !sameSpec(&want[i], e.applied) {
			changed = append(changed, i)
		}
	}
	keys := make([]Key, len(changed))
	for j, i := range changed {
		e := h.order[i]
		e.seen, e.wantIdx, e.dup = h.epoch, i, false
		keys[j] = e.key
	}
	slices.SortFunc(keys, compareKeys)
	return keys, true
}

// applyWork diffs and writes the services in work (sorted keys); full says
// their kernel state was just read.
func (h *Handle) applyWork(ctx context.Context, want []Service, work []Key, full bool, rep *Report) error {
	for _, k := range work {
		if err := ctx.Err(); err != nil {
			h.needFull = true
			return fmt.Errorf("apply IPVS services: %w", err)
		}
		e := h.entries[k]
		var w *Service
		if e.seen == h.epoch {
			w = &want[e.wantIdx]
			if err := Validate(*w); err != nil {
				rep.Failed[k] = err // keep the kernel's state for this key
				e.applied = nil
				continue
			}
		}
		h.applyService(k, e, w, full, rep)
		if w == nil && !e.exists && rep.Failed[k] == nil {
			e.gone = true
			delete(h.entries, k)
			h.setFingerprint(k, "")
		}
	}
	if len(rep.Failed) > 0 {
		h.needFull = true
	}
	return nil
}

// finish publishes the fingerprints. The snapshot is shared with the handle
// and copied shard by shard before the handle changes it, so a no-op Apply
// copies nothing and a single change copies one shard.
func (h *Handle) finish(rep Report) Report {
	rep.Fingerprint = h.fps.publish()
	return rep
}

// setFingerprint records fp for k ("" removes it).
func (h *Handle) setFingerprint(k Key, fp string) { h.fps.set(k, fp) }

// fullRead refreshes every entry from the kernel. Services whose
// destinations cannot be read are reported failed and returned in skip.
func (h *Handle) fullRead(rep *Report) (skip map[Key]bool, err error) {
	rep.FullRead = true
	have, reads, failed, err := h.read(func(k Key) bool { return h.entries[k] != nil })
	rep.Reads += reads
	if err != nil {
		return nil, err
	}
	haveBy := make(map[Key]*Service, len(have))
	for i := range have {
		haveBy[have[i].Key] = &have[i]
	}
	for k, e := range h.entries {
		if err := failed[k]; err != nil {
			rep.Failed[k] = err
			if skip == nil {
				skip = make(map[Key]bool)
			}
			skip[k] = true
			continue
		}
		fresh := haveBy[k]
		if e.exists != (fresh != nil) || (fresh != nil && !sameKernelView(&e.have, fresh)) {
			e.applied = nil // not what Apply left: diff it again
			e.exists = fresh != nil
			e.have = Service{}
			if fresh != nil {
				e.have = *fresh
			}
			h.refreshFingerprint(k, e)
		} else if fresh != nil {
			e.have.Destinations = fresh.Destinations // current connection counts
		}
	}
	h.lastFull = h.cfg.now()
	return skip, nil
}

// applyService diffs and writes one owned service.
func (h *Handle) applyService(k Key, e *entry, want *Service, fresh bool, rep *Report) {
	if !fresh {
		if e.exists {
			ds, err := h.readDests(k)
			rep.Reads++
			if err != nil {
				rep.Failed[k] = err
				e.applied = nil
				return
			}
			e.have.Destinations = ds
		}
	}
	var have *Service
	if e.exists {
		have = &e.have
	}
	ops := diffService(want, have)
	e.applied = nil
	for _, op := range ops {
		rep.Ops++
		if err := h.exec(op); err != nil {
			rep.Failed[k] = err
			h.log.Warn("IPVS write failed", "vip", k.String(), "reason", op.String(), "err", err)
			h.refreshFingerprint(k, e)
			return
		}
		h.log.Debug("IPVS write", "vip", k.String(), "reason", op.String())
		e.record(op)
	}
	if len(ops) > 0 {
		h.log.Info("IPVS service programmed", "vip", k.String(), "ops", len(ops), "reason", ops[0].Reason)
	}
	if want != nil {
		c := cloneService(*want)
		e.applied, e.drains = &c, hasDraining(c)
	}
	h.refreshFingerprint(k, e)
}

func (h *Handle) refreshFingerprint(k Key, e *entry) {
	fp := ""
	if e.exists {
		fp = Fingerprint(e.have)
	}
	h.setFingerprint(k, fp)
}

// exec issues one write.
func (h *Handle) exec(op Op) error {
	var err error
	switch op.Kind {
	case OpCreateService:
		err = h.k.NewService(kernelService(op.Service))
	case OpUpdateService:
		err = h.k.UpdateService(kernelService(op.Service))
	case OpDeleteService:
		err = h.k.DelService(kernelKey(op.Service.Key))
	case OpAddDestination:
		err = h.k.NewDestination(kernelKey(op.Service.Key), kernelDest(op.Destination))
	case OpUpdateDestination:
		err = h.k.UpdateDestination(kernelKey(op.Service.Key), kernelDest(op.Destination))
	case OpDeleteDestination:
		err = h.k.DelDestination(kernelKey(op.Service.Key), kernelDest(op.Destination))
	default:
		err = errors.New("unknown op")
	}
	if err == nil {
		return nil
	}
	hint := ""
	switch {
	case (op.Kind == OpCreateService || op.Kind == OpUpdateService) && errors.Is(err, syscall.ENOENT):
		hint = fmt.Sprintf(" (is the scheduler available? modprobe ip_vs_%s)", op.Service.Scheduler)
	case op.Kind == OpAddDestination && errors.Is(err, syscall.EINVAL):
		hint = " (the kernel takes only unicast destination addresses; in a new network namespace bring lo up first)"
	case errors.Is(err, syscall.EEXIST), errors.Is(err, syscall.ENOENT), errors.Is(err, syscall.ESRCH):
		hint = " (IPVS was changed behind this handle's back; the next Apply reads it again)"
	}
	return fmt.Errorf("%s: %w%s", op, err, hint)
}

// record mirrors a successful write in the entry, the way the kernel applies
// it (new destinations go to the head of the list).
func (e *entry) record(op Op) {
	switch op.Kind {
	case OpCreateService:
		e.exists = true
		e.have = op.Service
		e.have.Destinations = nil
	case OpUpdateService:
		ds := e.have.Destinations
		e.have = op.Service
		e.have.Destinations = ds
	case OpDeleteService:
		e.exists = false
		e.have = Service{}
	case OpAddDestination:
		d := op.Destination
		d.Draining, d.Conns = false, Conns{}
		e.have.Destinations = slices.Insert(e.have.Destinations, 0, d)
	case OpUpdateDestination:
		for i := range e.have.Destinations {
			if destKey(e.have.Destinations[i]) == destKey(op.Destination) {
				e.have.Destinations[i].Weight = op.Destination.Weight
				e.have.Destinations[i].Forwarding = op.Destination.Forwarding
			}
		}
	case OpDeleteDestination:
		e.have.Destinations = slices.DeleteFunc(e.have.Destinations, func(d Destination) bool {
			return destKey(d) == destKey(op.Destination)
		})
	}
}

// sameSpec reports whether two desired states of the same key are identical
// (counters aside). It runs for every service on every Apply: it is what a
// no-op Apply costs.
func sameSpec(a, b *Service) bool {
	if !sameString(a.Scheduler, b.Scheduler) || a.Persistence != b.Persistence ||
		!sameStrings(a.Flags, b.Flags) || len(a.Destinations) != len(b.Destinations) {
		return false
	}
	for i := range a.Destinations {
		x, y := &a.Destinations[i], &b.Destinations[i]
		if x.Address != y.Address || x.Port != y.Port || x.Weight != y.Weight ||
			x.Forwarding != y.Forwarding || x.Draining != y.Draining {
			return false
		}
	}
	return true
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
func sameKernelView(a, b *Service) bool {
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

func hasDraining(s Service) bool {
	return slices.ContainsFunc(s.Destinations, func(d Destination) bool { return d.Draining })
}

// cloneService copies s so later changes to the caller's slices cannot alter
// Apply's record.
func cloneService(s Service) Service {
	s.Flags = slices.Clone(s.Flags)
	s.Destinations = slices.Clone(s.Destinations)
	return s
}
