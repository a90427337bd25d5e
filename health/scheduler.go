package health

import (
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anycast-director/director/health/check"
)

const (
	// DefaultExecConcurrency bounds exec probes in flight: each is a process
	// (or several), far heavier than a socket.
	DefaultExecConcurrency = 128
	// DefaultInterval applies to a Spec without an Interval.
	DefaultInterval = time.Second
	// DefaultLearnRate is the Options.LearnRate directord uses: 1,000
	// new targets are learned within half a second; 10,000 at a 2 s
	// interval, as without it, over their interval.
	DefaultLearnRate = 2000
	// DefaultCoalesce is Options.Coalesce when it is 0.
	DefaultCoalesce = 50 * time.Millisecond
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
	// Concurrency bounds the probes in flight that run on goroutines of
	// their own (every type but the built-in tcp checker, which runs in the
	// tcp engine); 0 bounds them only by the open-files budget they share
	// with the engine (half the process's limit, at most 16,384 sockets).
	// Exec probes are also bounded by DefaultExecConcurrency. A slot that
	// finds its bound reached is skipped (SkipLimit), never queued.
	Concurrency int
	// OnProbe, when set, is called synchronously after every completed probe
	// (not after probes aborted by removal or shutdown, nor discarded ones),
	// for metrics such as check counts by result and latency histograms. It
	// runs on the probing goroutine (the tcp engine's for tcp probes),
	// outside the Scheduler's lock, and must be cheap.
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
	// LearnRate, when positive, brings the first probes of a batch of new
	// targets forward: they go out at up to this many per second (spread
	// evenly over that window) instead of over a whole interval, and each
	// target's later probes keep their cadence spread over the interval.
	// A backend without a verdict carries no traffic, so learning it sooner
	// costs a short burst and saves up to an interval of start-up. Exec
	// checks, each a process, keep their first probes spread. 0 spreads
	// every first probe over its interval; directord uses DefaultLearnRate.
	LearnRate float64
	// Checkers overrides the checker per Type; types it does not name use
	// DefaultCheckers. Tests inject fakes here.
	Checkers map[check.Type]Checker
	// Forwarding overrides the forwarding check that runs after a passing
	// probe of a target with a Path (the built-in one sends raw packets and
	// needs CAP_NET_RAW). Tests inject fakes here.
	Forwarding Checker
}

// Scheduler probes every target on its own cadence from one timer heap, so
// ten thousand targets cost one timer, not one per target: built-in tcp
// probes run in one event loop (tcpEngine), every other probe on a goroutine
// of its own that lives as long as the probe, so a probe's start and its
// verdict never wait for other backends, however many of them are slow. It
// deduplicates targets by Key, spreads first probes over the interval,
// dispatches starts that fall within Options.Coalesce of each other as one
// batch, never overlaps probes of one target, dampens results and publishes
// them as an immutable Snapshot.
//
// Starts keep a fixed cadence: each is the previous scheduled start plus the
// Interval, however long probes take. Nothing waits in a queue of the
// director's own: a probe's timeout starts when the probe starts, and a slot
// the scheduler cannot serve (the target's previous probe still runs, the
// probes in flight are at their limit, the dispatcher is late) is skipped,
// never queued, so there is no catch-up burst either. When the scheduler
// cannot keep up it probes less often and says so (Load, and the log): it
// stretches every interval (probing one slot in Load.Stretch, each target
// keeping its place), and a timeout it noticed or sent late, or that ran
// while it stalled, is discarded
// rather than blamed on the backend.
type Scheduler struct {
	log      *slog.Logger
	now      func() time.Time
	onProbe  func(Target, bool, time.Duration, error)
	checkers map[check.Type]Checker
	forward  Checker // the forwarding check (forward.go)
	coalesce time.Duration
	// learnRate is Options.LearnRate.
	learnRate float64

	// sockets bounds the sockets of probes in flight (the tcp engine's and
	// the goroutine probes'); goProbes and execs bound goroutine probes.
	sockets, goProbes, execs budget
	meter                    loadMeter
	// stalls notices when the director itself does not run; watching is
	// true while its goroutine runs (from the first goroutine probe until
	// Run ends).
	stalls   stallWatch
	watching atomic.Bool

	mu      sync.Mutex
	rand    *rand.Rand
	entries map[string]*entry
	queue   queue
	running bool
	// parkedAt and parkedTransitAt are the stretches takeDue last parked
	// entries at (skipAhead): a lower one unparks them.
	parkedAt, parkedTransitAt float64

	// version counts changes visible in a Snapshot; it is written under mu and
	// read without it to skip rebuilding an up-to-date snapshot.
	version atomic.Uint64
	snap    atomic.Pointer[published]

	wake    chan struct{} // the queue head may have moved earlier
	changes chan struct{}
	// engine is the tcp engine while it dispatches (Run); poke wakes it.
	engine atomic.Pointer[tcpEngine]
}

// published is a Snapshot and the version it was built from.
type published struct {
	version uint64
	snap    Snapshot
}

// NewScheduler returns a Scheduler with no targets. Call Update with the
// desired targets and Run to start probing.
func NewScheduler(logger *slog.Logger, opts Options) *Scheduler {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Scheduler{
		log:       logger,
		now:       opts.Now,
		onProbe:   opts.OnProbe,
		checkers:  DefaultCheckers(),
		forward:   opts.Forwarding,
		coalesce:  opts.Coalesce,
		learnRate: opts.LearnRate,
		rand:      opts.Rand,
		entries:   make(map[string]*entry),
		wake:      make(chan struct{}, 1),
		changes:   make(chan struct{}, 1),
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.forward == nil {
		s.forward = CheckerFunc(forwardingProbe)
	}
	s.queue.base = s.now()
	s.sockets.limit = int64(inFlightLimit())
	s.goProbes.limit = s.sockets.limit
	if opts.Concurrency > 0 {
		s.goProbes.limit = int64(opts.Concurrency)
	}
	s.execs.limit = DefaultExecConcurrency
	s.meter.log = logger
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
	if eng := s.engine.Load(); eng != nil {
		eng.wake()
		return
	}
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

// Load says whether the scheduler keeps up with its targets; see Load.
func (s *Scheduler) Load() Load { return s.meter.snapshot() }
