package health

import (
	"math"
	"time"
)

// transitShare is the share of an overloaded director's measured capacity
// kept for targets in transition (Down ones, and Up ones failing): their
// slots are thinned only as far as they need to fit in it, so a backend
// that comes back is seen at about its configured interval, not at the
// stretched one. At 10,000 distinct targets in the VM, thinning them like
// healthy ones took recovery to about 10 s (stretch 3.5 at 2 s intervals)
// against keepalived's 6.2 s. Exempting them outright let a director whose
// targets were mostly down shed no load (the http benchmark, all rising,
// kept 0.23 of its rate); bounded by this share, and never thinned more
// than the settled targets, they cost the healthy ones at most this share.
const transitShare = 0.25

// inTransit says e's verdict is not settled Up: it is Down (rising or not)
// or Up with failures that may take it down. Unknown targets (no verdict
// yet) are not: at start-up every target is, and the learn rate paces them.
func (e *entry) inTransit() bool {
	return e.damp.state == Down || e.failing()
}

// failing says e failed while Up: it probes every slot until fall probes
// confirm the failure or a pass calls it off (at most fall-1 probes per
// failure), so the probes an overloaded director can still afford confirm
// failures first.
func (e *entry) failing() bool { return e.damp.state == Up && e.damp.streak > 0 }

// thinning is the stretch e's slots are thinned at while the scheduler is
// overloaded: none (1) for a failing target, transit for a Down one,
// stretch for the others.
func (e *entry) thinning(stretch, transit float64) float64 {
	switch {
	case e.failing():
		return 1
	case e.damp.state == Down:
		return transit
	}
	return stretch
}

// rateMilli is the probes per second e asks for, times 1000: the unit of
// the meter's transit demand, which record adjusts by each target's own
// share as it enters or leaves transit.
func (e *entry) rateMilli() int64 {
	return int64(math.Round(1000 * float64(time.Second) / float64(e.interval)))
}

// transitFor is the stretch for targets in transition, which ask transit
// of the demanded probes/s, when the settled targets are at stretch and
// the director completes capacity probes/s (0: not known): as little as
// fits them in transitShare of the capacity, never more than stretch.
func transitFor(stretch, transit, capacity float64) float64 {
	if capacity <= 0 {
		return stretch
	}
	return min(max(transit/(transitShare*capacity), 1), stretch)
}

// fit is the settled targets' stretch at which the director asks
// capacity/head probes/s, of demanded probes/s in all and transit of them
// for targets in transition (transitFor). When the transit share is no
// smaller than the settled one would be, every target is thinned alike.
func fit(demanded, transit, capacity, head float64) float64 {
	d := max(transit/(transitShare*capacity), 1)
	if s := (demanded - transit) / (capacity - head*transit/d) * head; s >= d {
		return s
	}
	return demanded / capacity * head
}

// askedAt is the probe rate the targets ask at stretch: the settled ones
// thinned by it, those in transition by transitFor.
func (m *loadMeter) askedAt(stretch float64) float64 {
	demanded, transit := m.demanded(), m.transit()
	return (demanded-transit)/stretch + transit/transitFor(stretch, transit, m.capacity)
}

// transit is the demanded probe rate of targets in transition, per second.
func (m *loadMeter) transit() float64 { return float64(m.transitMilli.Load()) / 1000 }

// transitStretch is the factor the intervals of targets in transition are
// multiplied by (transitFor, judged with the stretch).
func (m *loadMeter) transitStretch() float64 {
	if b := m.transitBits.Load(); b != 0 {
		return math.Float64frombits(b)
	}
	return 1
}
