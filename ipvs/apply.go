package ipvs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"syscall"
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
	// it after Apply, for status and for comparing directors.
	Fingerprint map[Key]string
}

// entry is Apply's record of one owned service.
type entry struct {
	exists  bool     // the kernel has the service
	have    Service  // the kernel's view; destinations in kernel list order
	applied *Service // the desired state last applied without error
}

// Apply makes the kernel's IPVS services match want and returns what it did.
//
// It touches only owned services: the keys in want plus keys it applied
// before, so a service dropped from want is deleted; other services in the
// namespace are never read beyond the service list, written or flushed. On
// the first call (and every resync interval, after any failure, and when want
// has a key it has not seen) it reads the owned services from the kernel and
// diffs against them, so a restarted daemon adopts existing services and
// their connections instead of re-creating them. In between it diffs against
// its record of what it wrote, re-reading only services whose desired state
// changed or that have draining destinations.
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

	wantBy := make(map[Key]*Service, len(want))
	skip := make(map[Key]bool)
	for i := range want {
		k := want[i].Key
		if _, dup := wantBy[k]; dup {
			rep.Failed[k] = fmt.Errorf("service %s: listed twice in the desired state", k)
			skip[k] = true
			continue
		}
		wantBy[k] = &want[i]
		if err := Validate(want[i]); err != nil {
			rep.Failed[k] = err
			skip[k] = true
		}
	}
	full := h.needFull || h.cfg.now().Sub(h.lastFull) >= h.cfg.resync
	for k := range wantBy {
		if h.entries[k] == nil {
			full = true // adopt or create: the kernel may have it already
		}
	}
	keys := make(map[Key]bool, len(wantBy)+len(h.entries))
	for k := range wantBy {
		keys[k] = true
	}
	for k := range h.entries {
		keys[k] = true
	}
	if full {
		if err := h.fullRead(keys, skip, &rep); err != nil {
			h.needFull = true
			return h.finish(rep), err
		}
	}
	h.needFull = false

	order := slices.SortedFunc(maps.Keys(keys), compareKeys)
	for _, k := range order {
		if err := ctx.Err(); err != nil {
			h.needFull = true
			return h.finish(rep), fmt.Errorf("apply IPVS services: %w", err)
		}
		if skip[k] {
			continue
		}
		e := h.entries[k]
		if e == nil {
			e = &entry{}
			h.entries[k] = e
		}
		h.applyService(k, e, wantBy[k], full, &rep)
		if wantBy[k] == nil && !e.exists && rep.Failed[k] == nil {
			delete(h.entries, k)
			delete(h.fps, k)
		}
	}
	if len(rep.Failed) > 0 {
		h.needFull = true
	}
	return h.finish(rep), nil
}

// finish fills the fingerprints.
func (h *Handle) finish(rep Report) Report {
	rep.Fingerprint = maps.Clone(h.fps)
	return rep
}

// fullRead refreshes every entry in keys from the kernel. Services whose
// destinations cannot be read are marked failed and skipped this round.
func (h *Handle) fullRead(keys, skip map[Key]bool, rep *Report) error {
	rep.FullRead = true
	have, present, failed, err := h.read(keys)
	rep.Reads += 1 + len(present)
	if err != nil {
		return err
	}
	haveBy := make(map[Key]Service, len(have))
	for _, s := range have {
		haveBy[s.Key] = s
	}
	for k := range keys {
		if err := failed[k]; err != nil {
			rep.Failed[k] = err
			skip[k] = true
			continue
		}
		e := h.entries[k]
		if e == nil {
			e = &entry{}
			h.entries[k] = e
		}
		s, ok := haveBy[k]
		e.exists, e.have, e.applied = ok, s, nil
		h.refreshFingerprint(k, e)
	}
	h.lastFull = h.cfg.now()
	return nil
}

// applyService diffs and writes one owned service.
func (h *Handle) applyService(k Key, e *entry, want *Service, fresh bool, rep *Report) {
	if !fresh {
		if want != nil && e.applied != nil && sameSpec(*want, *e.applied) && !hasDraining(*want) {
			return // unchanged since it was applied: nothing to read or write
		}
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
		e.applied = &c
	}
	h.refreshFingerprint(k, e)
}

func (h *Handle) refreshFingerprint(k Key, e *entry) {
	if e.exists {
		h.fps[k] = Fingerprint(e.have)
	} else {
		delete(h.fps, k)
	}
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
		d.Draining, d.Stats = false, Stats{}
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

// sameSpec compares the desired fields of two services (not Stats).
func sameSpec(a, b Service) bool {
	if a.Key != b.Key || a.Scheduler != b.Scheduler || a.Persistence != b.Persistence ||
		!slices.Equal(a.Flags, b.Flags) || len(a.Destinations) != len(b.Destinations) {
		return false
	}
	for i := range a.Destinations {
		x, y := a.Destinations[i], b.Destinations[i]
		if x.Address != y.Address || x.Port != y.Port || x.Weight != y.Weight ||
			x.Forwarding != y.Forwarding || x.Draining != y.Draining {
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
