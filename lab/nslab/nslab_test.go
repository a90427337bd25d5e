package nslab

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestRouteGateways(t *testing.T) {
	tests := []struct {
		name string
		json string
		want []string
	}{
		{"single path", `[{"dst":"198.18.0.10","gateway":"10.0.1.11","dev":"eth0","protocol":"bgp","metric":20,"flags":[]}]`, []string{"10.0.1.11"}},
		{"ecmp", `[{"dst":"198.18.0.10","protocol":"bgp","metric":20,"flags":[],"nexthops":[{"gateway":"10.0.1.12","dev":"eth0","weight":1,"flags":[]},{"gateway":"10.0.1.11","dev":"eth0","weight":1,"flags":[]}]}]`, []string{"10.0.1.11", "10.0.1.12"}},
		{"no route", `[]`, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var rs []Route
			if err := json.Unmarshal([]byte(tc.json), &rs); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rs {
				got = append(got, r.Gateways()...)
			}
			if d := cmp.Diff(tc.want, got); d != "" {
				t.Errorf("Gateways (-want +got):\n%s", d)
			}
		})
	}
}

func TestCPUTime(t *testing.T) {
	start := time.Now()
	for time.Since(start) < 50*time.Millisecond { // burn a little CPU
	}
	got, err := CPUTime(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if got <= 0 || got > time.Hour {
		t.Errorf("CPUTime(self) = %s, want a small positive duration", got)
	}
	if _, err := CPUTime(-1); err == nil {
		t.Errorf("CPUTime(-1): want an error")
	}
}

func TestWaitAndHold(t *testing.T) {
	n := 0
	ctx := context.Background()
	if _, err := Wait(ctx, time.Second, time.Millisecond, func() error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Errorf("Wait = %v after %d calls, want nil after 3", err, n)
	}
	if _, err := Wait(ctx, 20*time.Millisecond, time.Millisecond, func() error { return errors.New("never") }); err == nil {
		t.Errorf("Wait on a condition that never holds: want an error")
	}
	if err := Hold(ctx, 20*time.Millisecond, time.Millisecond, func() error { return nil }); err != nil {
		t.Errorf("Hold of a steady condition: %v", err)
	}
	calls := 0
	if err := Hold(ctx, time.Second, time.Millisecond, func() error {
		calls++
		if calls == 5 {
			return errors.New("flap")
		}
		return nil
	}); err == nil || calls != 5 {
		t.Errorf("Hold = %v after %d calls, want the flap at call 5", err, calls)
	}
}

// watchOf is a RouteWatch over recorded monitor lines, as `ip monitor
// route` prints them.
func watchOf(lines ...string) *RouteWatch {
	p := &Proc{}
	at := time.Unix(1000, 0)
	for i, l := range lines {
		p.lines = append(p.lines, Line{At: at.Add(time.Duration(i) * time.Millisecond), Text: l})
	}
	return &RouteWatch{proc: p}
}

func TestRouteWatchEvents(t *testing.T) {
	w := watchOf(
		"198.18.0.10 nhid 20 proto bgp metric 20 ",
		"\tnexthop via 10.0.1.11 dev eth2 weight 1 ",
		"\tnexthop via 10.0.1.12 dev eth2 weight 1 ",
		"unreachable 240.0.0.1 table 4242 ",
		"Deleted unreachable 240.0.0.1 table 4242 ",
		"198.18.0.11 via 10.0.1.11 dev eth2 proto bgp metric 20 ",
		"Deleted 198.18.0.10 nhid 20 proto bgp metric 20 ",
		"\tnexthop via 10.0.1.11 dev eth2 weight 1 ",
		"2001:db8::10 via fd00:1::11 dev eth1 proto bgp metric 20 pref medium",
	)
	got := w.Events("198.18.0.10/32")
	if len(got) != 2 {
		t.Fatalf("Events(198.18.0.10/32) = %d events, want the add and the delete: %+v", len(got), got)
	}
	if got[0].Deleted || got[0].Dst != "198.18.0.10" || !got[1].Deleted {
		t.Errorf("events = %+v, want an add then a delete of 198.18.0.10", got)
	}
	if d := cmp.Diff([]string{"10.0.1.11", "10.0.1.12"}, got[0].Gateways()); d != "" {
		t.Errorf("Gateways of the ECMP add (-want +got):\n%s", d)
	}
	if !got[0].At.Equal(time.Unix(1000, 0)) {
		t.Errorf("At = %v, want the time the first line was read", got[0].At)
	}
	if all := w.Events(""); len(all) != 4 {
		t.Errorf("Events(\"\") = %d events, want 4 without the marker routes: %+v", len(all), all)
	}
	if v6 := w.Events("2001:db8::10"); len(v6) != 1 || v6[0].Gateways()[0] != "fd00:1::11" {
		t.Errorf("Events(2001:db8::10) = %+v", v6)
	}
	if part := w.eventsFrom(5, 6, ""); len(part) != 1 || part[0].Dst != "198.18.0.11" {
		t.Errorf("eventsFrom(5, 6) = %+v, want only 198.18.0.11", part)
	}
}

func TestTail(t *testing.T) {
	if got := Tail("a\nb\nc\n", 2); got != "...\nb\nc" {
		t.Errorf("Tail = %q", got)
	}
	if got := Tail("a\nb", 5); got != "a\nb" {
		t.Errorf("Tail of a short text = %q", got)
	}
}
