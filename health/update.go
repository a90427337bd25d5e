package health

import (
	"time"

	"github.com/anycast-director/director/health/check"
)

// Update replaces the set of targets. Targets with equal Keys are probed once.
// Targets already present keep their state and schedule; removed ones stop,
// and a probe of theirs in flight is cancelled.
//
// A new target that probes what an existing one probes (equal ProbeKey: only
// interval, timeout, rise or fall differ) carries that target's verdict,
// dampener streak and schedule over: a reload that retunes the timing does
// not send a healthy backend back through rise, and the new timing applies
// from the next probe. Other new targets get their first probe at random
// offsets in [0, Interval), stratified so a batch covers the interval evenly
// and start-up has no burst, or sooner with Options.LearnRate; until that
// probe they appear in the Snapshot as Unknown.
func (s *Scheduler) Update(targets []Target) {
	// Keys are formatted outside the lock: for ten thousand targets that is
	// the bulk of the work, and probes finishing meanwhile need the lock.
	keys := make([]string, len(targets))
	for i, t := range targets {
		keys[i] = t.Key()
	}
	want := make(map[string]struct{}, len(targets))
	var added []*entry
	var shared specs
	s.mu.Lock()
	now := s.now()
	for i, k := range keys {
		if _, dup := want[k]; dup {
			continue
		}
		want[k] = struct{}{}
		if _, ok := s.entries[k]; ok {
			continue
		}
		added = append(added, newEntry(k, &targets[i], shared.intern(&targets[i].Spec), now))
	}
	fresh := s.carryLocked(added, now)
	removed := 0
	for k, e := range s.entries {
		if _, ok := want[k]; !ok {
			s.removeLocked(e)
			removed++
		}
	}
	for _, e := range added {
		s.entries[e.key] = e
	}
	s.spreadLocked(fresh, now)
	s.version.Add(1)
	total := len(s.entries)
	s.meter.demandedMilli.Store(int64(1000 * demandedRate(s.entries)))
	s.meter.transitMilli.Store(transitMilli(s.entries))
	s.mu.Unlock()
	s.poke()
	if len(added) > 0 || removed > 0 {
		s.log.Info("health targets updated", "targets", total, "added", len(added),
			"verdict_kept", len(added)-len(fresh), "removed", removed)
	}
}

// demandedRate is the probes per second the entries ask for.
func demandedRate(entries map[string]*entry) float64 {
	rate := 0.0
	for _, e := range entries {
		rate += float64(time.Second) / float64(e.interval)
	}
	return rate
}

// transitMilli is the probes per second x 1000 the entries in transition
// ask for (entry.inTransit).
func transitMilli(entries map[string]*entry) int64 {
	var milli int64
	for _, e := range entries {
		if e.inTransit() {
			milli += e.rateMilli()
		}
	}
	return milli
}

// carryLocked gives every added entry whose ProbeKey an existing entry has
// that entry's verdict and schedule, and returns the added entries that had
// none (the fresh ones, to be spread).
func (s *Scheduler) carryLocked(added []*entry, now time.Time) (fresh []*entry) {
	if len(added) == 0 {
		return nil
	}
	byProbe := make(map[string]*entry, len(s.entries))
	for _, e := range s.entries {
		pk := ProbeKeyOf(e.key)
		// With several timings of one probe, carry the freshest verdict.
		if o, ok := byProbe[pk]; !ok || e.result.LastProbe.After(o.result.LastProbe) {
			byProbe[pk] = e
		}
	}
	for _, e := range added {
		src, ok := byProbe[ProbeKeyOf(e.key)]
		if !ok {
			fresh = append(fresh, e)
			continue
		}
		e.carry(src, now)
		s.queue.push(e)
	}
	return fresh
}

// carry takes over src's verdict, dampener streak (clamped to e's rise and
// fall) and schedule. e's next probe comes at src's next slot, or within one
// of e's intervals if that is sooner, so a shorter interval applies at once
// and a longer one from the next probe.
func (e *entry) carry(src *entry, now time.Time) {
	e.result = src.result
	e.damp = src.damp.Retune(e.spec.Rise, e.spec.Fall)
	e.dispatched, e.spreadAt = src.dispatched, src.spreadAt
	e.next, e.cadence, e.credit = src.next, src.cadence, src.credit
	if src.index < 0 || e.next.After(now.Add(e.interval)) {
		e.next, e.spreadAt, e.cadence = now.Add(e.interval), now, time.Time{}
	}
}

// newEntry builds the queue entry for a new target with defaults applied;
// spec is t's Spec, interned.
func newEntry(key string, t *Target, spec *check.Spec, now time.Time) *entry {
	interval := t.Spec.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	timeout := t.Spec.Timeout
	if timeout <= 0 {
		timeout = interval
	}
	return &entry{
		key: key, addr: t.Addr, port: t.Port, path: t.Path, spec: spec, interval: interval, timeout: timeout, index: -1,
		damp:   NewDampener(t.Spec.Rise, t.Spec.Fall),
		result: Result{State: Unknown, Reason: "waiting for first probe", Since: now},
	}
}

// removeLocked stops e: out of the queue and the map, its probe cancelled.
func (s *Scheduler) removeLocked(e *entry) {
	s.queue.remove(e)
	e.removed = true
	if e.cancel != nil {
		e.cancel()
	}
	delete(s.entries, e.key)
}

// spreadLocked queues new entries with cadence offsets in [0, Interval).
// Entries sharing an interval are shuffled into n equal strata, one each, with
// a uniform offset inside the stratum: every offset is still uniform on the
// interval, but n targets land evenly instead of clumping as n independent
// draws would. With Options.LearnRate, when n/LearnRate is shorter than the
// interval, each entry's first probe comes earlier, in the same stratum of
// that shorter learning window, and its next keeps the cadence at least half
// an interval later.
func (s *Scheduler) spreadLocked(added []*entry, now time.Time) {
	// Entries are grouped by interval, and exec checks (never learned
	// early) apart from the rest.
	type group struct {
		interval time.Duration
		exec     bool
	}
	groups := make(map[group][]*entry)
	var order []group
	for _, e := range added {
		k := group{e.interval, e.spec.Type == check.Exec}
		if _, ok := groups[k]; !ok {
			order = append(order, k)
		}
		groups[k] = append(groups[k], e)
	}
	for _, k := range order {
		g, iv := groups[k], k.interval
		n := float64(len(g))
		learn := iv
		if s.learnRate > 0 && !k.exec {
			learn = time.Duration(n / s.learnRate * float64(time.Second))
		}
		for i, slot := range s.rand.Perm(len(g)) {
			e := g[i]
			at := (float64(slot) + s.rand.Float64()) / n
			e.next = now.Add(min(time.Duration(at*float64(iv)), iv-1))
			e.spreadAt, e.credit = now, s.rand.Float64()
			if learn < iv {
				first := now.Add(time.Duration(at * float64(learn)))
				if e.next.Sub(first) < iv/2 {
					e.next = e.next.Add(iv)
				}
				e.next, e.cadence = first, e.next
			}
			s.queue.push(e)
		}
	}
}

// Carried returns what snap becomes once the scheduler is updated to
// targets: every target that is not in snap but probes what one in snap
// probes (equal ProbeKey) carries that verdict, as Update does. Targets
// probing something new are left out (Unknown). snap itself is not changed.
// A dry run plans with it, so it predicts what the reload will do.
func (s Snapshot) Carried(targets []Target) Snapshot {
	byProbe := make(map[string]Result, len(s))
	for k, r := range s {
		pk := ProbeKeyOf(k)
		if o, ok := byProbe[pk]; !ok || r.LastProbe.After(o.LastProbe) {
			byProbe[pk] = r
		}
	}
	out := make(Snapshot, len(s)+len(targets))
	for k, r := range s {
		out[k] = r
	}
	for _, t := range targets {
		k := t.Key()
		if _, ok := out[k]; ok {
			continue
		}
		if r, ok := byProbe[ProbeKeyOf(k)]; ok {
			out[k] = r
		}
	}
	return out
}
