package health

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"time"
)

// probe runs one probe of e under its timeout and records the result. The
// timeout starts once the probe holds its entry, not when its goroutine
// began: waiting for the scheduler's lock behind thousands of others is the
// director's backlog, not the backend's time. A timeout is the backend's
// fault only if the director did its part on time: a probe that timed out
// after it was sent late (sendClock), that noticed its timeout well after
// the deadline (its goroutine did not run in time, and the answer may have
// waited unread), or during which the director stalled (stallWatch: the
// runtime may have run the deadline timer before the netpoller reported
// the answer), and one that passed but returned after its deadline, say
// more about the director than about the backend. Such a result is
// discarded, never counted as a failure. A probe sent late that passed in
// time, or that the backend refused, is a result like any.
func (s *Scheduler) probe(runCtx context.Context, e *entry) {
	ctx, cancel := context.WithCancel(runCtx)
	defer cancel()
	t, ok := s.begin(e, cancel)
	if !ok {
		return
	}
	start := s.now()
	deadline := start.Add(e.timeout)
	ctx, sent := withSendClock(ctx, start.Add(discardAfter(e.timeout)), s.now)
	ctx, stop := context.WithDeadline(ctx, deadline)
	defer stop()
	s.meter.inFlight.Add(1)
	err := s.check(ctx, t)
	s.meter.inFlight.Add(-1)
	end := s.now()
	if err == nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// A pass returned after the deadline: the built-in checkers read
		// the answer under the deadline, so the director was slow to
		// return it (or the checker ignored its context). Neither a pass
		// nor the backend's failure.
		s.discard(runCtx, e, t, errTimeout, "it passed but returned after its deadline (director overloaded)", end.Sub(deadline))
		return
	}
	if errors.Is(err, context.DeadlineExceeded) && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// The checker returned the bare context error.
		err = fmt.Errorf("%w after %s", errTimeout, e.timeout)
	}
	if errors.Is(err, errTimeout) {
		switch late := end.Sub(deadline); {
		case sent.late.Load():
			s.discard(runCtx, e, t, err, "it was sent too late to blame the backend (director overloaded)", end.Sub(start))
			return
		case late > discardAfter(e.timeout):
			s.discard(runCtx, e, t, err, "its timeout was noticed late (director overloaded)", late)
			return
		case s.stalls.stalledDuring(start, end, end):
			s.discard(runCtx, e, t, err, "the director stalled while it ran (overloaded)", end.Sub(start))
			return
		}
	}
	s.record(runCtx, e, t, err, start, end)
}

// discardAfter is how late a probe may notice its timeout, and how long
// after its start it may be sent, and still blame the backend for a
// timeout: a quarter of the timeout, at least 100 ms.
func discardAfter(timeout time.Duration) time.Duration { return max(timeout/4, 100*time.Millisecond) }

// discard ends e's probe without a result: the director, not the backend,
// was slow (why says how; late is how far behind it was).
func (s *Scheduler) discard(runCtx context.Context, e *entry, t Target, err error, why string, late time.Duration) {
	s.mu.Lock()
	e.running, e.cancel = false, nil
	s.mu.Unlock()
	if runCtx.Err() != nil {
		return
	}
	s.meter.discarded.Add(1)
	s.log.Debug("health probe result discarded: "+why,
		"backend", netip.AddrPortFrom(t.Addr, t.Port), "check", t.Spec.Type, "late", late, "err", err)
}

// begin claims a dispatched entry for its probe and returns the target to
// probe; false means the target was removed meanwhile. cancel, when not nil,
// lets a removal abort the probe.
func (s *Scheduler) begin(e *entry, cancel context.CancelFunc) (Target, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e.removed {
		e.running = false
		return Target{}, false
	}
	e.cancel = cancel
	return e.target(), true
}

// record ends e's probe that ran from start to end with outcome err: it
// feeds the dampener, publishes the result and signals a state change. A
// probe of a removed target, or one ending because Run stops, is dropped.
func (s *Scheduler) record(runCtx context.Context, e *entry, t Target, err error, start, end time.Time) {
	latency := end.Sub(start)
	s.mu.Lock()
	e.running = false
	e.cancel = nil
	if e.removed || runCtx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.meter.completed.Add(1)
	was := e.inTransit()
	prev := e.damp.step(err == nil)
	if now := e.inTransit(); now != was {
		// The meter counts transit demand apart (transitFor); Update
		// recounts it from scratch.
		if now {
			s.meter.transitMilli.Add(e.rateMilli())
		} else {
			s.meter.transitMilli.Add(-e.rateMilli())
		}
	}
	changed, reason := e.damp.State() != prev, e.reasonAfter(err == nil, prev)
	r := &e.result
	r.Probes++
	r.Latency = latency
	r.LastProbe = end
	r.LastError, r.Reason = "", reason
	if err != nil {
		r.LastError = err.Error()
		r.Reason = reason + ": " + r.LastError
	}
	if changed {
		r.State = e.damp.State()
		r.Since = end
	}
	unparked := e.failing() && e.parked > 0 && e.index >= 0
	if unparked {
		// A failure while Up: the next slot is probed whatever the
		// stretch (takeDue), not the one e was parked at.
		e.unpark(end, 1)
		s.queue.moved(e)
	}
	s.version.Add(1)
	res := *r
	s.mu.Unlock()
	if unparked {
		s.poke() // the dispatcher may sleep past e's new slot
	}

	if s.onProbe != nil {
		s.onProbe(t, err == nil, latency, err)
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("health probe", "backend", netip.AddrPortFrom(t.Addr, t.Port), "check", t.Spec.Type,
			"ok", err == nil, "latency", latency, "err", err)
	}
	if changed {
		// A first verdict that is Up is routine: at start-up every target
		// has one, and a line each (thousands, each costing about as much
		// CPU as a probe under emulation) slowed the learn burst. The
		// announcer logs how many passed in each pass; a first verdict of
		// Down, and every later change, is logged here one by one.
		level := slog.LevelInfo
		if prev == Unknown && res.State == Up {
			level = slog.LevelDebug
		}
		s.log.Log(context.Background(), level, "health state changed", "backend", netip.AddrPortFrom(t.Addr, t.Port),
			"check", t.Spec.Type, "state", res.State, "reason", res.Reason)
		select {
		case s.changes <- struct{}{}:
		default:
		}
	}
}

// check runs the checker for t's type, then, when it passes and t has a
// forwarding Path, the forwarding check.
func (s *Scheduler) check(ctx context.Context, t Target) error {
	c, ok := s.checkers[t.Spec.Type]
	if !ok || c == nil {
		return fmt.Errorf("no checker for health check type %q; use tcp, http, https, udp, dns or exec", t.Spec.Type)
	}
	if err := c.Check(ctx, t); err != nil || !t.Path.VIP.IsValid() {
		return err
	}
	// The real server answers; now through the forwarding path.
	return s.forward.Check(ctx, t)
}
