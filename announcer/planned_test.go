package announcer

import (
	"net/netip"
	"testing"

	"github.com/anycast-director/director/ipvs"
)

// TestPlannedNextKeepsTheIndexOnlyForTheSameKeys: a plan that lists the
// same services in the same order shares the previous plan's index (no
// map is built on a steady pass), and every lookup still answers from the
// new plan's services; a plan that adds, removes or reorders services gets
// an index of its own.
func TestPlannedNextKeepsTheIndexOnlyForTheSameKeys(t *testing.T) {
	key := func(port uint16) ipvs.Key {
		return ipvs.Key{VIP: netip.MustParseAddr("198.18.0.10"), Port: port, Protocol: 6}
	}
	svc := func(port uint16, sched string) ipvs.Service { return ipvs.Service{Key: key(port), Scheduler: sched} }
	first := NewPlanned([]ipvs.Service{svc(80, "mh"), svc(443, "mh")})

	same := first.next([]ipvs.Service{svc(80, "wlc"), svc(443, "rr")})
	if len(same.index) != 2 {
		t.Fatalf("index %v, want the previous plan's two keys", same.index)
	}
	first.index[key(8080)] = 7 // shared: visible through same
	if _, ok := same.index[key(8080)]; !ok {
		t.Errorf("a plan with the same keys in the same order built its own index; want the previous one shared")
	}
	delete(first.index, key(8080))
	if s, ok := same.Get(key(443)); !ok || s.Scheduler != "rr" {
		t.Errorf("Get(443) = %+v, %v; want the new plan's service (scheduler rr)", s, ok)
	}

	for name, services := range map[string][]ipvs.Service{
		"reordered": {svc(443, "rr"), svc(80, "wlc")},
		"added":     {svc(80, "wlc"), svc(443, "rr"), svc(8443, "sh")},
		"removed":   {svc(443, "rr")},
	} {
		p := first.next(services)
		if len(p.index) != len(services) {
			t.Errorf("%s: index has %d keys, want %d", name, len(p.index), len(services))
		}
		for _, want := range services {
			if got, ok := p.Get(want.Key); !ok || got.Scheduler != want.Scheduler {
				t.Errorf("%s: Get(%s) = %+v, %v; want scheduler %s", name, want.Key, got, ok, want.Scheduler)
			}
		}
		if _, ok := p.Get(key(80)); name == "removed" && ok {
			t.Errorf("removed: Get(80) found a service the plan no longer has")
		}
	}
}
