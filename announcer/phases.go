package announcer

import (
	"fmt"
	"strings"
	"time"
)

// slowPassLog is how long a pass may take before the log says where its
// time went.
const slowPassLog = time.Second

// phases times the steps of one pass, so a slow pass can say which step was
// slow (at 1,000 services x 10 under emulation some passes ran for over
// 15 s without a step that reports progress, and the watchdog withdrew
// every VIP).
type phases struct {
	start, last time.Time
	steps       []phaseStep
}

// phaseStep is one timed step.
type phaseStep struct {
	name string
	took time.Duration
}

// newPhases starts timing a pass at now.
func newPhases(now time.Time) phases { return phases{start: now, last: now} }

// mark ends the step called name at now.
func (p *phases) mark(now time.Time, name string) {
	p.steps = append(p.steps, phaseStep{name, now.Sub(p.last)})
	p.last = now
}

// total is the time from the start to the last mark.
func (p *phases) total() time.Duration { return p.last.Sub(p.start) }

// String lists the steps that took at least a hundredth of the pass, in
// order: "plan 1.2s, program 3.4s".
func (p *phases) String() string {
	var parts []string
	for _, s := range p.steps {
		if s.took >= p.total()/100 {
			parts = append(parts, fmt.Sprintf("%s %s", s.name, s.took.Round(time.Millisecond)))
		}
	}
	return strings.Join(parts, ", ")
}
