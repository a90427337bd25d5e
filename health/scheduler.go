package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anycast-director/director/health/check"
)

const (
	// DefaultConcurrency is the worker pool size when Options.Concurrency is 0.
	// Probes against dead targets hold a worker for their whole timeout, so the
	// pool must cover rate x timeout: 256 workers sustain 512 probes/s that all
	// time out after 500 ms, and far more against live targets.
	DefaultConcurrency = 256
	// DefaultInterval applies to a Spec without an Interval.
	DefaultInterval = time.Second
	// DefaultCoalesce is Options.Coalesce when it is 0.
	DefaultCoalesce = 20 * time.Millisecond
	// maxBatch bounds how many due probes the dispatcher takes per lock hold,
	// so Update and Snapshot never wait long behind it.
	maxBatch = 256
)

// Options tune a Scheduler. The zero value is ready for production use.
type Options struct {
	// Rand picks first-probe offsets; seed it for reproducible tests. Nil uses a
	// randomly seeded source.
	Rand *rand.Rand
	// Now is the clock for schedules and timestamps; nil is time.Now. It must
	// advance with real time (timers are real), as synctest's fake clock does.
	Now func() time.Time
	// Concurrency is the maximum number of probes in flight (the worker pool
	// size); 0 is DefaultConcurrency.
	Concurrency int
	// OnProbe, when set, is called synchronously after every completed probe
	// (not after probes aborted by removal or shutdown), for metrics such as
	// check counts by result and latency histograms. It runs on the probing
	// worker, outside the Scheduler's lock, and must be cheap: a slow hook
	// holds a worker.
	OnProbe func(t Target, ok bool, latency time.Duration, err error)
	// Coalesce cuts time into cells of this length, and the dispatcher
	// starts every probe whose slot falls in a cell at the cell's beginning
	// (never more than an eighth of its Interval early), as one batch. The
	// process then wakes once per cell rather than once per probe, which at
	// thousands of probes per second saves a large share of its CPU.
	// Cadence does not drift: each slot is still the previous one plus the
	// Interval. 0 is DefaultCoalesce; a negative value dispatches every
	// probe at its slot.
	Coalesce time.Duration
	// Checkers overrides the checker per Type; types it does not name use
	// DefaultCheckers. Tests inject fakes here.
	Checkers map[check.Type]Checker
}

// Scheduler probes every target on its own cadence from one timer heap, so
// ten thousand targets cost a fixed number of goroutines, not one per target:
// built-in tcp probes run in one event loop (tcpEngine), every other type in
// a bounded worker pool. It deduplicates targets by Key, spreads first probes
// over the interval, dispatches starts that fall within Options.Coalesce of
// each other as one batch, never overlaps probes of one target, dampens
// results and publishes them as an immutable Snapshot.
//
// Starts keep a fixed cadence: each is the previous scheduled start plus the
// Interval, however long probes take. A slot that comes while the target's
// previous probe still runs (Timeout >= Interval, every worker busy, or the
// tcp engine full) is skipped rather than queued, so a slow target or an
// overloaded pool never causes a catch-up burst.
type Scheduler struct {
	log         *slog.Logger
	now         func() time.Time
	onProbe     func(Target, bool, time.Duration, error)
	checkers    map[check.Type]Checker
	concurrency int
	coalesce    time.Duration

	mu      sync.Mutex
	rand    *rand.Rand
	entries map[string]*entry
	queue   queue
	running bool

	// version counts changes visible in a Snapshot; it is written under mu and
	// read without it to skip rebuilding an up-to-date snapshot.
	version atomic.Uint64
	snap    atomic.Pointer[published]

	wake    chan struct{} // the queue head may have moved earlier
	changes chan struct{}
}

// published is a Snapshot and the version it was built from.
type published struct {
	version uint64
	snap    Snapshot
}

// job is one probe handed from the dispatcher to a worker.
type job struct{ e *entry }

// NewScheduler returns a Scheduler with no targets. Call Update with the
// desired targets and Run to start probing.
func NewScheduler(logger *slog.Logger, opts Options) *Scheduler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{
		log:         logger,
		now:         opts.Now,
		onProbe:     opts.OnProbe,
		checkers:    DefaultCheckers(),
		concurrency: opts.Concurrency,
		coalesce:    opts.Coalesce,
		rand:        opts.Rand,
		entries:     make(map[string]*entry),
		wake:        make(chan struct{}, 1),
		changes:     make(chan struct{}, 1),
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.queue.base = s.now()
	if s.concurrency <= 0 {
		s.concurrency = DefaultConcurrency
	}
	switch {
	case s.coalesce == 0:
		s.coalesce = DefaultCoalesce
	case s.coalesce < 0:
		s.coalesce = 0
	}
	if s.rand == nil {
		s.rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	// The exec checker's jail logs through the scheduler's logger.
	s.checkers[check.Exec] = newExecChecker(logger)
	for typ, c := range opts.Checkers {
		s.checkers[typ] = c
	}
	s.snap.Store(&published{snap: Snapshot{}})
	return s
}

// Changes delivers a token whenever a target's State changes, including its
// first verdict. The channel has capacity 1 and sends never block, so a burst of
// changes wakes a slow reader once; the reader then takes a fresh Snapshot.
func (s *Scheduler) Changes() <-chan struct{} { return s.changes }

// poke wakes the dispatcher without blocking.
func (s *Scheduler) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Snapshot returns the latest result of every target, keyed by Target.Key().
// The map is shared and immutable: callers must not modify it. It is rebuilt
// only when something changed since the last call.
func (s *Scheduler) Snapshot() Snapshot {
	if p := s.snap.Load(); p.version == s.version.Load() {
		return p.snap
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.version.Load()
	if p := s.snap.Load(); p.version == v {
		return p.snap
	}
	snap := make(Snapshot, len(s.entries))
	for k, e := range s.entries {
		snap[k] = e.result
	}
	s.snap.Store(&published{version: v, snap: snap})
	return snap
}

// Run probes the targets until ctx is done, then cancels probes in flight,
// waits for its workers and returns nil. Only one Run may be active at a time.
func (s *Scheduler) Run(ctx context.Context) error {
	s.mu.Lock()
	if s.running {
		s.mu.Unlock()
		return errors.New("health scheduler is already running; call Run once")
	}
	s.running = true
	s.rebaseLocked(s.now())
	s.mu.Unlock()

	jobs := make(chan job)
	var wg sync.WaitGroup
	for range s.concurrency {
		wg.Go(func() {
			for j := range jobs {
				s.probe(ctx, j.e)
			}
		})
	}
	eng := s.startTCPEngine(ctx, &wg)
	defer func() {
		if eng != nil {
			eng.wake()
		}
		close(jobs)
		wg.Wait()
		if eng != nil {
			eng.close()
		}
		s.closeCheckers()
		s.mu.Lock()
		s.running = false
		s.mu.Unlock()
	}()

	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		due, wait := s.takeDue()
		var batch []*entry
		if eng != nil {
			// tcp probes go to the engine in one batch, the rest to workers.
			due = slices.DeleteFunc(due, func(e *entry) bool {
				if e.target.Spec.Type == check.TCP {
					batch = append(batch, e)
					return true
				}
				return false
			})
			if len(batch) > 0 && !eng.submit(ctx, batch) {
				s.release(batch)
				s.release(due)
				return nil
			}
		}
		for i, e := range due {
			select {
			case jobs <- job{e}:
			case <-ctx.Done():
				s.release(due[i:])
				return nil
			}
		}
		if len(due)+len(batch) > 0 {
			continue // time moved on while dispatching; look again
		}
		var tc <-chan time.Time
		if wait >= 0 {
			timer.Reset(wait)
			tc = timer.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tc:
		case <-s.wake:
		}
	}
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

// startTCPEngine starts the engine for tcp probes when the tcp checker is
// the built-in one (tests inject fakes through Options.Checkers). Without an
// engine, tcp probes run on the workers like every other type.
func (s *Scheduler) startTCPEngine(ctx context.Context, wg *sync.WaitGroup) *tcpEngine {
	if _, ok := s.checkers[check.TCP].(tcpChecker); !ok {
		return nil
	}
	eng, err := newTCPEngine(s)
	if err != nil {
		s.log.Warn("health tcp probes fall back to the worker pool", "err", err)
		return nil
	}
	wg.Go(func() { eng.run(ctx) })
	return eng
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
			e.next = e.next.Add(now.Sub(e.spreadAt))
			e.spreadAt = now
		case e.next.Before(now):
			e.next = nextSlot(e.next, now, e.interval)
		}
	})
}

// takeDue pops up to maxBatch entries whose start has come, marks them running
// and requeues them at their next slot. Entries still running from their last
// slot are skipped for this one: probes of a target never overlap. wait is the
// time until the next start, or -1 when nothing is queued.
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
	for s.queue.len() > 0 && len(due) < maxBatch {
		e := s.queue.head()
		if !e.next.Before(horizon) || e.next.Sub(now) > e.interval/8 {
			return due, s.dueAt(e).Sub(now)
		}
		e.next = nextSlot(e.next, now, e.interval)
		s.queue.moved(e)
		if e.running {
			s.log.Debug("health probe skipped: previous probe still running",
				"backend", netip.AddrPortFrom(e.target.Addr, e.target.Port), "check", e.target.Spec.Type)
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

// release clears the running mark of entries that were taken but never handed
// to a worker because Run is stopping.
func (s *Scheduler) release(es []*entry) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, e := range es {
		e.running = false
	}
}

// probe runs one probe of e under its timeout and records the result.
func (s *Scheduler) probe(runCtx context.Context, e *entry) {
	ctx, cancel := context.WithTimeout(runCtx, e.timeout)
	defer cancel()
	t, ok := s.begin(e, cancel)
	if !ok {
		return
	}
	start := s.now()
	err := s.check(ctx, t)
	end := s.now()
	if errors.Is(ctx.Err(), context.DeadlineExceeded) && (err == nil || errors.Is(err, context.DeadlineExceeded)) {
		// The checker returned late, or returned the bare context error.
		err = fmt.Errorf("%w after %s", errTimeout, e.timeout)
	}
	s.record(runCtx, e, t, err, start, end)
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
	return e.target, true
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
	changed, reason := e.damp.Observe(err == nil)
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
	s.version.Add(1)
	res := *r
	s.mu.Unlock()

	if s.onProbe != nil {
		s.onProbe(t, err == nil, latency, err)
	}
	if s.log.Enabled(context.Background(), slog.LevelDebug) {
		s.log.Debug("health probe", "backend", netip.AddrPortFrom(t.Addr, t.Port), "check", t.Spec.Type,
			"ok", err == nil, "latency", latency, "err", err)
	}
	if changed {
		s.log.Info("health state changed", "backend", netip.AddrPortFrom(t.Addr, t.Port),
			"check", t.Spec.Type, "state", res.State, "reason", res.Reason)
		select {
		case s.changes <- struct{}{}:
		default:
		}
	}
}

// check runs the checker for t's type.
func (s *Scheduler) check(ctx context.Context, t Target) error {
	c, ok := s.checkers[t.Spec.Type]
	if !ok || c == nil {
		return fmt.Errorf("no checker for health check type %q; use tcp, http, https, udp, dns or exec", t.Spec.Type)
	}
	return c.Check(ctx, t)
}
