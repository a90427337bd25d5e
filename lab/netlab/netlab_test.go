package netlab

import (
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
	if _, err := Wait(time.Second, time.Millisecond, func() error {
		n++
		if n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Errorf("Wait = %v after %d calls, want nil after 3", err, n)
	}
	if _, err := Wait(20*time.Millisecond, time.Millisecond, func() error { return errors.New("never") }); err == nil {
		t.Errorf("Wait on a condition that never holds: want an error")
	}
	if err := Hold(20*time.Millisecond, time.Millisecond, func() error { return nil }); err != nil {
		t.Errorf("Hold of a steady condition: %v", err)
	}
	calls := 0
	if err := Hold(time.Second, time.Millisecond, func() error {
		calls++
		if calls == 5 {
			return errors.New("flap")
		}
		return nil
	}); err == nil || calls != 5 {
		t.Errorf("Hold = %v after %d calls, want the flap at call 5", err, calls)
	}
}
