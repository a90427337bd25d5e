package health

import "fmt"

// Dampener turns a stream of probe results into an Up/Down verdict with
// hysteresis, so one lost probe does not pull a backend and one lucky probe does
// not put a broken one back. It is a pure value type: no clock, no I/O, which
// keeps every transition table-testable.
//
// It starts Unknown. The first probe decides at once: a failure gives Down; a
// success gives Up when Rise is 1, else Down ("rising 1/Rise"), because a new
// target must prove itself before it takes traffic. Afterwards Down turns Up
// after Rise consecutive successes and Up turns Down after Fall consecutive
// failures.
type Dampener struct {
	rise, fall int
	state      State
	// streak counts consecutive results that argue against the current state:
	// successes while Down, failures while Up.
	streak int
}

// NewDampener returns an Unknown dampener. Rise and fall below 1 count as 1.
func NewDampener(rise, fall int) Dampener {
	return Dampener{rise: max(rise, 1), fall: max(fall, 1)}
}

// Retune returns d with new rise and fall counts (below 1 count as 1) and
// the same verdict, for a reload that changes only a check's timing. A streak
// already at the new count is held one short of it, so the verdict changes
// at the next probe that continues the streak, not at the reload.
func (d Dampener) Retune(rise, fall int) Dampener {
	n := NewDampener(rise, fall)
	n.state, n.streak = d.state, d.streak
	switch d.state {
	case Up:
		n.streak = min(n.streak, n.fall-1)
	case Down:
		n.streak = min(n.streak, n.rise-1)
	}
	return n
}

// State returns the current verdict.
func (d Dampener) State() State { return d.state }

// Observe records one probe result. It reports whether the State changed
// (including the first verdict, Unknown to Up or Down) and a reason that
// explains the State after this probe: "2/2 probes passed", "falling 1/3",
// "rising 1/2", "3/3 probes failed" or "probe failed".
func (d *Dampener) Observe(ok bool) (changed bool, reason string) {
	prev := d.step(ok)
	return d.state != prev, d.reason(ok, prev)
}

// step records one probe result and returns the state before it.
func (d *Dampener) step(ok bool) (prev State) {
	prev = d.state
	switch {
	case d.state == Unknown && !ok:
		d.state, d.streak = Down, 0
	case d.state == Unknown: // first success
		d.state, d.streak = Down, 1
		if d.streak >= d.rise {
			d.state, d.streak = Up, 0
		}
	case d.state == Down && ok:
		d.streak++
		if d.streak >= d.rise {
			d.state, d.streak = Up, 0
		}
	case d.state == Down: // failure
		d.streak = 0
	case d.state == Up && !ok:
		d.streak++
		if d.streak >= d.fall {
			d.state, d.streak = Down, 0
		}
	default: // Up, success
		d.streak = 0
	}
	return prev
}

// reason explains the state after a probe whose result was ok, given the state
// before it.
func (d Dampener) reason(ok bool, prev State) string {
	switch {
	case d.state == Up && ok:
		return fmt.Sprintf("%d/%d probes passed", d.rise, d.rise)
	case d.state == Up:
		return fmt.Sprintf("falling %d/%d", d.streak, d.fall)
	case ok:
		return fmt.Sprintf("rising %d/%d", d.streak, d.rise)
	case prev == Up:
		return fmt.Sprintf("%d/%d probes failed", d.fall, d.fall)
	}
	return "probe failed"
}
