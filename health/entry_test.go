package health

import (
	"net/netip"
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// TestUpdateSharesIdenticalSpecs: the entries of targets with identical
// checks (a service's backends) share one copy of the spec, deep-copied from
// the caller's; a target whose check differs in any field has its own; and
// every entry still probes exactly its Target.
func TestUpdateSharesIdenticalSpecs(t *testing.T) {
	s := newTestScheduler(newFake(nil), Options{})
	spec := check.Spec{Type: check.Exec, Interval: time.Second, Timeout: 500 * time.Millisecond, Rise: 1, Fall: 3,
		Command: []string{"/bin/true"}}
	var targets []Target
	for i := range 10 {
		targets = append(targets, Target{Addr: netip.AddrFrom4([4]byte{10, 0, 0, byte(i + 1)}), Port: 80, Spec: spec})
	}
	other := spec.Clone()
	other.Timeout++
	targets = append(targets, Target{Addr: netip.MustParseAddr("10.0.0.1"), Port: 80, Spec: other})
	s.Update(targets)
	keys := make([]string, len(targets))
	for i, tg := range targets {
		keys[i] = tg.Key()
	}
	targets[0].Spec.Command[0] = "mutated by caller" // all ten share this array

	s.mu.Lock()
	defer s.mu.Unlock()
	first := s.entries[keys[1]].spec
	for i, tg := range targets {
		e := s.entries[keys[i]]
		if e == nil {
			t.Fatalf("target %d has no entry", i)
		}
		if shared := e.spec == first; shared != (i < 10) {
			t.Errorf("target %d: spec shared with the first target's %v, want %v", i, shared, i < 10)
		}
		want := tg
		want.Spec.Command = []string{"/bin/true"}
		if diff := cmp.Diff(want, e.target(), cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Errorf("target %d probes (-want +got):\n%s", i, diff)
		}
	}
}
