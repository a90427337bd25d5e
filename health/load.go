package health

import (
	"fmt"
	"log/slog"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Why a probe's slot passed without a probe. Each is the director's own
// doing, never the backend's: skipped slots are not results.
const (
	// SkipBusy: the target's previous probe was still running (it started
	// or was harvested late: the timeout is shorter than the interval).
	SkipBusy = "busy"
	// SkipLimit: the probes in flight reached their limit (open files for
	// sockets, DefaultExecConcurrency for exec checks).
	SkipLimit = "limit"
	// SkipLate: the dispatcher reached the slot more than an interval late.
	SkipLate = "late"
)

const (
	// loadWindow is how often the scheduler judges its own load.
	loadWindow = time.Second
	// maxStretch bounds how far an overloaded scheduler stretches intervals.
	maxStretch = 8
	// calmWindowsToRelax is how many calm windows in a row (calmShare)
	// shrink the stretch by relaxStep.
	calmWindowsToRelax = 3
	// relaxStep divides the stretch after calmWindowsToRelax calm windows:
	// gentler than the doubling, so the stretch settles near the rate the
	// director can keep instead of bouncing between a rate it cannot and
	// half of it.
	relaxStep = 1.5
	// slowShare is the share of a window's probes that must start late or
	// end discarded for the scheduler to stretch its intervals: a stray late
	// wake-up (a busy host) is reported, but only a director that is late
	// for many probes probes less often.
	slowShare = 0.1
	// calmShare is the share of late or discarded probes at or under which
	// a window counts as calm. It is not zero: at thousands of probes per
	// second a garbage collection or a busy host makes a few starts late in
	// most windows, and a stretch that relaxed only after windows with none
	// at all stayed at its maximum (10,000 targets under emulation kept 0.11
	// of the demanded rate while the daemon used 42 % of one core).
	calmShare = 0.01
	// deficitShare: a slow window that completed fewer than this share of
	// the stretched demand shows the director's capacity.
	deficitShare = 0.95
	// headroom is how far above the stretch that matched the achieved rate
	// an overloaded director stretches, so a backlog drains.
	headroom = 1.1
	// nearRelaxStep divides the stretch after calm windows near the
	// remembered capacity: 10 % more probes per step, not 50 %, so the
	// director does not swing between more than it can do and far less.
	nearRelaxStep = 1.1
	// forgetShare: a stretch calm at this share below the remembered
	// capacity's forgets it.
	forgetShare = 1.2
	// capacityWeight is the weight of a window's measured rate in the
	// capacity estimate (smoothed).
	capacityWeight = 0.3
)

// Load says whether the scheduler keeps up with the probes the targets ask
// for. A scheduler that does not (its CPU, its file descriptors or its
// exec slots are short) probes less often instead of failing probes:
// slots it cannot serve are skipped, intervals are stretched while
// dispatching runs late, and a timeout it noticed or sent late, or that ran
// while the director stalled, is discarded rather
// than counted against the backend.
type Load struct {
	// Overloaded is true while the last window showed a sign of overload or
	// intervals are stretched.
	Overloaded bool
	// Reason says what the last sign of overload was ("" when none).
	Reason string
	// Since is when the current overload began (zero when not overloaded).
	Since time.Time
	// Stretch multiplies every interval on average: each target probes one
	// slot in Stretch (1 when keeping up, up to 8).
	Stretch float64
	// TransitStretch is the stretch of the targets in transition (Down,
	// or failing while Up): at most Stretch, and only as far as they need
	// to fit in a quarter of the director's measured capacity, so a backend
	// that comes back is seen sooner than a healthy one's next probe. A
	// target failing while Up probes every slot whatever the stretch.
	TransitStretch float64
	// Demanded is the probe rate the targets ask for, per second.
	Demanded float64
	// Achieved is the probe rate completed in the last window, per second.
	Achieved float64
	// InFlight is the number of probes running.
	InFlight int
	// Skipped counts skipped slots since start, by reason (SkipBusy, ...).
	Skipped map[string]uint64
	// Discarded counts probe results thrown away since start: timeouts the
	// scheduler sent or noticed too late, or that ran while it stalled: they
	// say nothing about the backend.
	Discarded uint64
}

// budget bounds probes in flight without blocking: tryAcquire fails when
// the limit is reached.
type budget struct {
	limit int64
	used  atomic.Int64
}

// tryAcquire takes one slot, or returns false when none is free.
func (b *budget) tryAcquire() bool {
	if b.used.Add(1) > b.limit {
		b.used.Add(-1)
		return false
	}
	return true
}

// release returns a slot.
func (b *budget) release() { b.used.Add(-1) }

// loadMeter counts the signs of overload as they happen (from any
// goroutine) and judges them once per window (on the dispatcher).
type loadMeter struct {
	log *slog.Logger

	skipped               [3]atomic.Uint64 // SkipBusy, SkipLimit, SkipLate
	discarded, lateStarts atomic.Uint64
	completed, started    atomic.Uint64
	inFlight              atomic.Int64
	stretchBits           atomic.Uint64 // float64 bits of the stretch
	demandedMilli         atomic.Int64  // demanded probes/s x 1000
	// transitMilli is the demanded probes/s x 1000 of the targets in
	// transition (entry.inTransit), and transitBits the float64 bits of
	// their stretch (transitFor).
	transitMilli atomic.Int64
	transitBits  atomic.Uint64
	mu           sync.Mutex
	windowStart  time.Time
	prev         [7]uint64 // counters at the window start
	calm         int
	// raised says the last window raised the stretch; capacity is the
	// probe rate the director achieved in its last window short of the
	// stretched demand (0: none known).
	raised   bool
	capacity float64
	// slowBefore says the last window was slow too, and slowRate is the
	// probe rate it completed.
	slowBefore bool
	slowRate   float64
	load       Load
}

// skipIndex maps a skip reason to its counter.
func skipIndex(reason string) int {
	switch reason {
	case SkipBusy:
		return 0
	case SkipLimit:
		return 1
	}
	return 2
}

// skip counts n skipped slots.
func (m *loadMeter) skip(reason string, n uint64) { m.skipped[skipIndex(reason)].Add(n) }

// stretch is the factor every interval is multiplied by.
func (m *loadMeter) stretch() float64 {
	if b := m.stretchBits.Load(); b != 0 {
		return math.Float64frombits(b)
	}
	return 1
}

// counters reads the cumulative counters: busy, limit, late skips, late
// starts, discards, completions, starts.
func (m *loadMeter) counters() [7]uint64 {
	return [7]uint64{m.skipped[0].Load(), m.skipped[1].Load(), m.skipped[2].Load(),
		m.lateStarts.Load(), m.discarded.Load(), m.completed.Load(), m.started.Load()}
}

// judge closes the window if it is over. Any skipped slot, late start or
// discarded result is reported as overload; a window in which more than
// slowShare of the probes started late, missed their slot or were
// discarded (the director itself is slow, not one backend) doubles the
// stretch, and calmWindowsToRelax windows in a row with at most calmShare
// of them and no slot skipped at the in-flight limit divide it by
// relaxStep. Transitions and stretch changes are logged. It returns the
// time until the window that is open ends: the dispatcher wakes then to
// judge it, so windows stay loadWindow long however rarely starts are due.
func (m *loadMeter) judge(now time.Time) time.Duration {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.closeWindow(now)
	return max(m.windowStart.Add(loadWindow).Sub(now), 0)
}

// closeWindow is judge's work under m.mu.
func (m *loadMeter) closeWindow(now time.Time) {
	if m.windowStart.IsZero() {
		m.windowStart, m.prev = now, m.counters()
		return
	}
	span := now.Sub(m.windowStart)
	if span < loadWindow {
		return
	}
	cur := m.counters()
	var d [7]uint64
	for i := range d {
		d[i] = cur[i] - m.prev[i]
	}
	m.windowStart, m.prev = now, cur
	signs := d[0]+d[1]+d[2]+d[3]+d[4] > 0
	share := float64(d[2]+d[3]+d[4]) / float64(max(d[6]+d[2], 1))
	was := m.stretch()
	stretch := m.restretch(was, share, d[1] > 0, float64(d[5])/span.Seconds())
	m.stretchBits.Store(math.Float64bits(stretch))
	transit := transitFor(stretch, m.transit(), m.capacity)
	m.transitBits.Store(math.Float64bits(transit))
	if stretch != was {
		m.log.Info("health check intervals stretched", "stretch", math.Round(stretch*100)/100, "was", math.Round(was*100)/100,
			"transit_stretch", math.Round(transit*100)/100, "transit_demanded_per_s", m.transit(),
			"late_share", math.Round(share*1000)/1000, "demanded_per_s", m.demanded(),
			"achieved_per_s", math.Round(float64(d[5])/span.Seconds()))
	}
	overloaded := m.load.Overloaded
	l := &m.load
	l.Overloaded = signs || stretch > 1
	l.Stretch, l.Achieved = stretch, float64(d[5])/span.Seconds()
	if why := reasonOf(d, span); why != "" {
		l.Reason = why
	}
	switch {
	case l.Overloaded && !overloaded:
		l.Since = now
		m.log.Warn("health checks overloaded: probing less often, skipped slots are not failures",
			"reason", l.Reason, "stretch", stretch, "demanded_per_s", m.demanded(), "achieved_per_s", l.Achieved)
	case !l.Overloaded && overloaded:
		m.log.Info("health checks keep up again", "overloaded_for", now.Sub(l.Since).Round(time.Second))
		l.Since, l.Reason = time.Time{}, ""
	}
}

// restretch is the stretch after a window that began at stretch with share
// of its probes late or discarded, a slot skipped at the in-flight limit
// (limited) and achieved probes completed per second.
//
// A slow window in which the director completed fewer probes than the
// stretched demand asked for shows what it can do, its capacity, which is
// remembered smoothed (one window's rate is noisy: following it, the stretch
// swung between 1.6 and 5.4 at 1,000 targets in the VM; a calm window above
// the estimate raises it to that rate, which the director has shown it
// can do): the stretch goes to the one at which the targets ask for that
// capacity, with headroom (at most doubling per window). Targets in
// transition are counted at their own, smaller stretch (fit, transitFor):
// counted at the settled one, 1,000 targets failing at once made every
// window late while the meter held a stretch it thought fitted. Once a capacity is known, a
// slow window after one that was not holds the stretch: a stall (the
// reconcile pass programming 1,000 IPVS changes took the emulated CPUs for
// 0.5-2.3 s) is one slow window, and the window after it drains the
// backlog at the director's full rate, so only the higher rate of two slow
// windows in a row counts (taking each stall's rate ratcheted the stretch
// to its maximum at 10,000 distinct targets in the VM: 0.19 of the
// demanded rate at half a core). A slow window without a
// deficit holds a stretch that already fits the capacity measured (a
// backlog may take more than a window to drain: doubling on it went 3.9 to
// 7.7 in the VM); with no capacity known it is a stall (doubling, as a
// director that cannot tell how far behind it is). The window right after a raise holds: its
// lateness and its rate are the backlog from before the change, not a sign
// it was too small (in the VM under a busy host, raising again on them
// went 3.6, 6.3, 8 in two windows). Doubling
// at every slow window overshot (stretch 1.4 to 5.3 every few seconds at
// 10,000 targets under emulation: 0.28 of the demanded rate kept, at 70 %
// of one core).
//
// calmWindowsToRelax calm windows in a row relax the stretch by relaxStep,
// but only by steps of nearRelaxStep where that would pass the remembered
// capacity; a stretch calm well below it forgets it (the director got
// faster or its load lighter).
func (m *loadMeter) restretch(stretch, share float64, limited bool, achieved float64) float64 {
	raised, confirmed := m.raised, m.slowBefore
	m.raised, m.slowBefore = false, share > slowShare
	demanded, transit := m.demanded(), m.transit()
	switch {
	case share > slowShare:
		m.calm = 0
		sample := max(achieved, m.slowRate)
		m.slowRate = achieved
		if raised || !confirmed && m.capacity > 0 {
			return stretch
		}
		if sample > 0 && sample < deficitShare*m.askedAt(stretch) {
			m.capacity = smoothed(m.capacity, sample)
		}
		if m.capacity > 0 {
			want := fit(demanded, transit, m.capacity, headroom)
			if want <= stretch {
				// The stretch already fits the capacity measured: the
				// lateness is a backlog still draining (a real shortfall
				// shows as a deficit above).
				return stretch
			}
			m.raised = true
			return min(want, 2*stretch, maxStretch)
		}
		m.raised = true
		return min(stretch*2, maxStretch)
	case share > calmShare || limited:
		m.calm = 0
		return stretch
	case stretch > 1:
		if m.capacity > 0 && achieved > m.capacity {
			// A calm window above the capacity measured: the director
			// does more than that estimate says.
			m.capacity = achieved
		}
		if m.calm++; m.calm < calmWindowsToRelax {
			return stretch
		}
		m.calm = 0
		next := stretch / relaxStep
		if m.capacity > 0 {
			wall := fit(demanded, transit, m.capacity, 1) // the stretch at which the director was at capacity
			switch {
			case stretch < wall/forgetShare:
				m.capacity = 0
			case next < wall*headroom:
				next = stretch / nearRelaxStep
			}
		}
		return max(next, 1)
	}
	return stretch
}

// smoothed is the capacity estimate after a window that measured sample:
// an exponentially weighted mean (weight capacityWeight for the new
// sample), or the sample itself when none is known.
func smoothed(capacity, sample float64) float64 {
	if capacity <= 0 {
		return sample
	}
	return capacity + capacityWeight*(sample-capacity)
}

// reasonOf phrases a window's signs of overload for status and logs.
func reasonOf(d [7]uint64, span time.Duration) string {
	var parts []string
	add := func(n uint64, what string) {
		if n > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", n, what))
		}
	}
	add(d[3], "probes started late")
	add(d[0], "slots skipped (previous probe still running)")
	add(d[1], "slots skipped (probes in flight at their limit)")
	add(d[2], "slots missed (dispatcher late)")
	add(d[4], "timeouts discarded (probe sent or timeout noticed late, or the director stalled)")
	if len(parts) == 0 {
		return ""
	}
	return strings.Join(parts, ", ") + fmt.Sprintf(" in %s", span.Round(time.Millisecond))
}

// demanded is the demanded probe rate per second.
func (m *loadMeter) demanded() float64 { return float64(m.demandedMilli.Load()) / 1000 }

// snapshot returns the current Load.
func (m *loadMeter) snapshot() Load {
	m.mu.Lock()
	l := m.load
	m.mu.Unlock()
	c := m.counters()
	l.Stretch = m.stretch()
	l.TransitStretch = m.transitStretch()
	l.Demanded = m.demanded()
	l.InFlight = int(m.inFlight.Load())
	l.Skipped = map[string]uint64{SkipBusy: c[0], SkipLimit: c[1], SkipLate: c[2]}
	l.Discarded = c[4]
	return l
}
