package dataplane

import (
	"errors"
	"syscall"
	"time"

	"github.com/anycast-director/director/ipvs"
)

// mustRead reports whether a service must be read from the kernel before
// it is diffed, when there was no full read: see prepare.
func mustRead(e *entry, want *ipvs.Service) bool {
	return !e.trusted || want == nil || hasDraining(want.Destinations) || hasDraining(e.have.Destinations)
}

// hasDraining reports whether any destination is draining.
func hasDraining(ds []ipvs.Destination) bool {
	for i := range ds {
		if ds[i].Draining {
			return true
		}
	}
	return false
}

// reread replaces the record's destinations of k with the kernel's. On
// failure the service is reported failed and distrusted, and reread returns
// false.
func (h *Handle) reread(k ipvs.Key, e *entry, rep *Report) bool {
	ds, err := h.readDests(k)
	rep.Reads++
	if err != nil {
		rep.Failed[k] = err
		e.distrust()
		h.refreshFingerprint(k, e)
		return false
	}
	e.have.Destinations = ds
	return true
}

// write diffs want against the record of k and issues the writes, recording
// each one that succeeds; it stops at the first failure and returns it.
func (h *Handle) write(k ipvs.Key, e *entry, want *ipvs.Service, now time.Time, rep *Report) error {
	var have *ipvs.Service
	if e.exists {
		have = &e.have
	}
	ops := ipvs.DiffService(want, have, now)
	for _, op := range ops {
		rep.Ops++
		if err := h.exec(op); err != nil {
			h.log.Warn("IPVS write failed", "vip", k.String(), "reason", op.String(), "err", err)
			return err
		}
		h.log.Debug("IPVS write", "vip", k.String(), "reason", op.String())
		e.record(op)
	}
	if len(ops) > 0 {
		h.log.Info("IPVS service programmed", "vip", k.String(), "ops", len(ops), "reason", ops[0].Reason)
	}
	return nil
}

// isDrift reports whether a write failed because the kernel does not hold
// what the record says: an object missing (ENOENT, ESRCH) or already there
// (EEXIST).
func isDrift(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ESRCH) || errors.Is(err, syscall.EEXIST)
}
