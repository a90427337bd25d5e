package health

import (
	"fmt"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// step is one observed probe and what the dampener must say after it.
type step struct {
	OK      bool
	State   State
	Changed bool
	Reason  string
}

func TestDampenerScenarios(t *testing.T) {
	// Steps build on each other: each row is a whole life of one target.
	pass := func(st State, changed bool, reason string) step { return step{true, st, changed, reason} }
	fail := func(st State, changed bool, reason string) step { return step{false, st, changed, reason} }
	tests := []struct {
		name       string
		rise, fall int
		steps      []step
	}{
		{name: "first failure is down at once", rise: 2, fall: 3, steps: []step{
			fail(Down, true, "probe failed"),
			fail(Down, false, "probe failed"),
		}},
		{name: "first success with rise 1 is up at once", rise: 1, fall: 3, steps: []step{
			pass(Up, true, "1/1 probes passed"),
			pass(Up, false, "1/1 probes passed"),
		}},
		{name: "first success with rise 2 is down, rising", rise: 2, fall: 3, steps: []step{
			pass(Down, true, "rising 1/2"),
			pass(Up, true, "2/2 probes passed"),
			pass(Up, false, "2/2 probes passed"),
		}},
		{name: "fall needs consecutive failures", rise: 2, fall: 3, steps: []step{
			pass(Down, true, "rising 1/2"),
			pass(Up, true, "2/2 probes passed"),
			fail(Up, false, "falling 1/3"),
			fail(Up, false, "falling 2/3"),
			pass(Up, false, "2/2 probes passed"), // resets the fall count
			fail(Up, false, "falling 1/3"),
			fail(Up, false, "falling 2/3"),
			fail(Down, true, "3/3 probes failed"),
			fail(Down, false, "probe failed"),
		}},
		{name: "rise needs consecutive successes", rise: 3, fall: 1, steps: []step{
			fail(Down, true, "probe failed"),
			pass(Down, false, "rising 1/3"),
			pass(Down, false, "rising 2/3"),
			fail(Down, false, "probe failed"), // resets the rise count
			pass(Down, false, "rising 1/3"),
			pass(Down, false, "rising 2/3"),
			pass(Up, true, "3/3 probes passed"),
			fail(Down, true, "1/1 probes failed"),
			pass(Down, false, "rising 1/3"),
		}},
		{name: "rise and fall of 1 follow every probe", rise: 1, fall: 1, steps: []step{
			fail(Down, true, "probe failed"),
			pass(Up, true, "1/1 probes passed"),
			fail(Down, true, "1/1 probes failed"),
			pass(Up, true, "1/1 probes passed"),
		}},
		{name: "zero counts behave as 1", rise: 0, fall: -2, steps: []step{
			pass(Up, true, "1/1 probes passed"),
			fail(Down, true, "1/1 probes failed"),
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDampener(tc.rise, tc.fall)
			if d.State() != Unknown {
				t.Fatalf("new dampener state = %s, want unknown", d.State())
			}
			var got []step
			for _, s := range tc.steps {
				changed, reason := d.Observe(s.OK)
				got = append(got, step{s.OK, d.State(), changed, reason})
			}
			if diff := cmp.Diff(tc.steps, got); diff != "" {
				t.Errorf("steps (-want +got):\n%s", diff)
			}
		})
	}
}

// referenceState is the dampening rule written differently: after the first
// probe, Down turns Up when the trailing run of successes in the whole history
// reaches rise, and Up turns Down when the trailing run of failures reaches fall.
func referenceState(rise, fall int, history []bool) []State {
	var states []State
	st := Unknown
	for i, ok := range history {
		run := 0
		for j := i; j >= 0 && history[j] == ok; j-- {
			run++
		}
		switch {
		case st == Unknown && ok && run >= rise, st == Down && ok && run >= rise:
			st = Up
		case st == Unknown:
			st = Down
		case st == Up && !ok && run >= fall:
			st = Down
		}
		states = append(states, st)
	}
	return states
}

func TestDampenerExhaustive(t *testing.T) {
	// Every probe history up to 10 results, for rise and fall 1..4.
	const maxLen = 10
	for rise := 1; rise <= 4; rise++ {
		for fall := 1; fall <= 4; fall++ {
			for n := 1; n <= maxLen; n++ {
				for bits := range 1 << n {
					history := make([]bool, n)
					for i := range history {
						history[i] = bits&(1<<i) != 0
					}
					want := referenceState(rise, fall, history)
					d := NewDampener(rise, fall)
					prev := Unknown
					for i, ok := range history {
						changed, _ := d.Observe(ok)
						if d.State() != want[i] || changed != (want[i] != prev) {
							t.Fatalf("rise %d fall %d history %v: after probe %d state %s changed %t, want %s changed %t",
								rise, fall, fmtHistory(history), i+1, d.State(), changed, want[i], want[i] != prev)
						}
						prev = want[i]
					}
				}
			}
		}
	}
}

func fmtHistory(h []bool) string {
	s := ""
	for _, ok := range h {
		if ok {
			s += "+"
		} else {
			s += "-"
		}
	}
	return fmt.Sprintf("%q", s)
}

func TestStateString(t *testing.T) {
	got := []string{Unknown.String(), Down.String(), Up.String(), State(42).String()}
	if diff := cmp.Diff([]string{"unknown", "down", "up", "unknown"}, got); diff != "" {
		t.Errorf("State.String (-want +got):\n%s", diff)
	}
}

func TestStateMarshalsAsItsName(t *testing.T) {
	for _, s := range []State{Unknown, Down, Up} {
		b, err := s.MarshalText()
		if err != nil || string(b) != s.String() {
			t.Errorf("%d.MarshalText() = %q, %v; want %q", s, b, err, s.String())
		}
	}
}

// TestDampenerRetune: new rise and fall keep the verdict; a streak at or past
// the new count is held one short, so the next probe decides.
func TestDampenerRetune(t *testing.T) {
	observe := func(d *Dampener, oks ...bool) {
		for _, ok := range oks {
			d.Observe(ok)
		}
	}
	cases := []struct {
		name       string
		rise, fall int
		before     []bool
		newRise    int
		newFall    int
		next       bool
		want       State
	}{
		{"up stays up", 2, 3, []bool{true, true}, 4, 3, true, Up},
		{"falling 2/3, fall 2: next failure downs", 1, 3, []bool{true, false, false}, 1, 2, false, Down},
		{"falling 2/3, fall 2: a success resets", 1, 3, []bool{true, false, false}, 1, 2, true, Up},
		{"rising 2/4, rise 2: next success ups", 4, 1, []bool{true, true}, 2, 1, true, Up},
		{"rising 1/2, rise 4: next success still down", 2, 1, []bool{true}, 4, 1, true, Down},
		{"unknown stays unknown until a probe", 2, 2, nil, 1, 1, true, Up},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := NewDampener(tc.rise, tc.fall)
			observe(&d, tc.before...)
			was := d.State()
			r := d.Retune(tc.newRise, tc.newFall)
			if r.State() != was {
				t.Fatalf("Retune changed the state %s -> %s", was, r.State())
			}
			observe(&r, tc.next)
			if r.State() != tc.want {
				t.Errorf("after the next probe (ok=%t): %s, want %s", tc.next, r.State(), tc.want)
			}
		})
	}
}
