package health

import (
	"context"
	"errors"
	"io"
	"net/netip"
	"sync"
	"time"

	"github.com/anycast-director/director/health/check"
)

// Run probes the targets until ctx is done, then cancels probes in flight,
// waits for them and returns nil. Only one Run may be active at a time.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("health scheduler is already running; call Run once")
	}
	s.running = true
	s.rebaseLocked(s.now())
	s.mu.Unlock()

	var wg sync.WaitGroup
	defer func() {
		wg.Wait()
		s.closeCheckers()
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()
	if s.runEngine(ctx, &wg) {
		return nil
	}
	return s.dispatchLoop(ctx, &wg)
}

// dispatchLoop is the dispatcher without a tcp engine: every probe runs on
// a goroutine of its own.
func (s *Scheduler) dispatchLoop(ctx context.Context, wg *sync.WaitGroup) error {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, wait := s.takeDue()
		judgeIn := s.meter.judge(s.now())
		if ctx.Err() != nil {
			s.release(due)
			return nil
		}
		for _, e := range due {
			s.launch(ctx, wg, e)
		}
		if len(due) > 0 {
			continue // time moved on while dispatching; look again
		}
		// Wake when the load window ends, to judge it.
		if wait < 0 || wait > judgeIn {
			wait = judgeIn
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return nil
		case <-timer.C:
		case <-s.wake:
		}
	}
}

// launch starts e's probe on a goroutine of its own, or skips the slot when
// the probes in flight are at their limit. It never blocks: a slow probe
// holds only its own goroutine, and nothing else waits for it.
func (s *Scheduler) launch(ctx context.Context, wg *sync.WaitGroup, e *entry) {
	held := []*budget{&s.goProbes}
	if e.spec.Type == check.Exec {
		held = append(held, &s.execs)
	} else {
		held = append(held, &s.sockets)
	}
	for i, b := range held {
		if !b.tryAcquire() {
			for _, r := range held[:i] {
				r.release()
			}
			s.skipLimit(e)
			return
		}
	}
	s.meter.started.Add(1)
	if s.watching.CompareAndSwap(false, true) {
		// Only goroutine probes consult the stall watch: a director
		// probing tcp alone (the engine) does not pay its ticks.
		wg.Go(func() {
			defer s.watching.Store(false)
			s.stalls.run(ctx, s.now)
		})
	}
	wg.Go(func() {
		defer func() {
			for _, b := range held {
				b.release()
			}
		}()
		s.probe(ctx, e)
	})
}

// skipLimit gives up e's slot because too many probes are in flight.
func (s *Scheduler) skipLimit(e *entry) {
	s.meter.skip(SkipLimit, 1)
	s.log.Debug("health probe skipped: too many probes in flight",
		"backend", netip.AddrPortFrom(e.addr, e.port), "check", e.spec.Type)
	s.release([]*entry{e})
}

// closeCheckers releases what checkers hold once no probe runs: the exec
// checker kills whatever a probe left and removes its cgroup.
func (s *Scheduler) closeCheckers() {
	for typ, c := range s.checkers {
		if cl, ok := c.(io.Closer); ok {
			if err := cl.Close(); err != nil {
				s.log.Warn("health checker cleanup failed", "check", typ, "err", err)
			}
		}
	}
}

// runEngine dispatches every probe from the tcp engine's goroutine (this
// one) until ctx ends, and reports true then. It reports false when there
// is no engine (the tcp checker is not the built-in one: tests inject fakes
// through Options.Checkers) or when the engine failed: tcp probes then run
// on goroutines like every other type.
func (s *Scheduler) runEngine(ctx context.Context, wg *sync.WaitGroup) bool {
	if _, ok := s.checkers[check.TCP].(tcpChecker); !ok {
		return false
	}
	eng, err := newTCPEngine(s)
	if err != nil {
		s.log.Warn("health tcp probes fall back to a goroutine each", "err", err)
		return false
	}
	s.engine.Store(eng)
	err = eng.run(ctx, wg)
	s.engine.Store(nil)
	eng.close()
	if err != nil {
		s.log.Error("health tcp probes fall back to a goroutine each: the probe engine stopped", "err", err)
		return ctx.Err() != nil
	}
	return true
}

// rebaseLocked re-anchors starts when Run begins. Targets never probed keep
// their offsets but measured from now rather than from their Update, so a
// batch added before Run is spread over the first interval of Run instead of
// firing at once; targets probed before (Run restarted) move to their next
// slot in cadence.
func (s *Scheduler) rebaseLocked(now time.Time) {
	s.queue.each(func(e *entry) {
		switch {
		case !e.dispatched:
			d := now.Sub(e.spreadAt)
			e.next = e.next.Add(d)
			if !e.cadence.IsZero() {
				e.cadence = e.cadence.Add(d)
			}
			e.spreadAt = now
		case e.next.Before(now):
			e.next = nextSlot(e.next, now, e.interval)
		}
	})
}

// takeDue pops up to maxBatch entries whose start has come, marks them running
// and requeues them at their next slot. While the scheduler is overloaded
// (stretch > 1) each settled target probes only one slot in stretch, on
// average; a Down target one in the transit stretch (transitFor: a share
// of the capacity is kept for them) and a target that failed while Up
// every slot until the failure is confirmed or called off, so the probes
// the director can still afford confirm failures and recoveries first. Entries still running from their last slot are
// skipped for this one: probes of a target never overlap. wait is the time
// until the next start, or -1 when nothing is queued.
//
// With coalescing, time is cut into cells of Options.Coalesce aligned on the
// clock, and a start is due from the beginning of its cell (but never more
// than an eighth of its interval early). The dispatcher then wakes once per
// cell and each batch holds exactly one cell's worth of slots, so batching
// does not make some 100 ms windows busier than others.
func (s *Scheduler) takeDue() (due []*entry, wait time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := s.now()
	horizon := now.Add(1) // starts before horizon are due
	if s.coalesce > 0 {
		horizon = now.Truncate(s.coalesce).Add(s.coalesce)
	}
	stretch, transit := s.meter.stretch(), s.meter.transitStretch()
	if stretch < s.parkedAt || transit < s.parkedTransitAt {
		s.queue.each(func(e *entry) {
			if thin := e.thinning(stretch, transit); e.parked > 0 && thin < e.parkStretch {
				e.unpark(now, thin)
			}
		})
	}
	s.parkedAt, s.parkedTransitAt = stretch, transit
	for s.queue.len() > 0 && len(due) < maxBatch {
		e := s.queue.head()
		if !e.next.Before(horizon) || e.next.Sub(now) > e.interval/8 {
			return due, s.dueAt(e).Sub(now)
		}
		slot := e.next
		if e.cadence.IsZero() {
			e.next = nextSlot(e.next, now, e.interval)
		} else { // a learning first probe: the next one keeps the cadence
			e.next, e.cadence = nextSlot(e.cadence.Add(-e.interval), now, e.interval), time.Time{}
		}
		if thin := e.thinning(stretch, transit); thin > 1 && e.dispatched {
			// Overloaded: probe one slot in stretch. Each target keeps
			// its place in the interval, so the probes that remain stay
			// spread as evenly as all of them were; stretching the
			// interval itself bunched them (the targets taken while the
			// stretch grew all moved to the same part of the longer
			// interval, leaving seconds with nothing due and then a burst
			// that overloaded the director again).
			e.credit += 1 / thin
			probe := e.credit >= 1
			if probe {
				e.credit--
			}
			e.skipAhead(thin)
			s.queue.moved(e)
			if !probe {
				continue
			}
		} else {
			s.queue.moved(e)
		}
		if e.dispatched {
			// A first probe late is the learning burst queueing (Options.
			// LearnRate), not a sign the director cannot keep its cadence.
			s.noteLateness(slot, e.interval, now)
		}
		if e.running {
			s.meter.skip(SkipBusy, 1)
			s.log.Debug("health probe skipped: previous probe still running",
				"backend", netip.AddrPortFrom(e.addr, e.port), "check", e.spec.Type)
			continue
		}
		e.running, e.dispatched = true, true
		due = append(due, e)
	}
	if len(due) > 0 || s.queue.len() > 0 {
		return due, 0
	}
	return due, -1
}

// noteLateness counts a start taken late: more than a quarter of its
// interval (at least 100 ms) after its slot is a sign of overload, and
// whole intervals late are slots missed.
func (s *Scheduler) noteLateness(slot time.Time, interval time.Duration, now time.Time) {
	late := now.Sub(slot)
	if late <= max(interval/4, 100*time.Millisecond) {
		return
	}
	s.meter.lateStarts.Add(1)
	if missed := late / interval; missed > 0 {
		s.meter.skip(SkipLate, uint64(missed))
	}
}

// dueAt is when takeDue first takes e: the start of the coalescing cell of
// its slot, or an eighth of its interval before the slot if that is later.
func (s *Scheduler) dueAt(e *entry) time.Time {
	if s.coalesce <= 0 {
		return e.next
	}
	at := e.next.Truncate(s.coalesce)
	if early := e.next.Add(-e.interval / 8); early.After(at) {
		at = early
	}
	return at
}

// release clears the running mark of entries that were taken but never
// probed (Run stopping, or no room in flight).
func (s *Scheduler) release(es []*entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range es {
		e.running = false
	}
}
