package dataplane

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/ipvs"
)

// TestCanonicalOrderAnyHistory replays random backend-set histories against
// the fake kernel and checks that after every Apply the kernel list is the
// canonical order of the current set, so two directors with different
// histories end with equal fingerprints.
func TestCanonicalOrderAnyHistory(t *testing.T) {
	pool := []ipvs.Destination{dst("10.0.2.21", 1), dst("10.0.2.22", 2), dst("10.0.2.23", 1), dst("10.0.2.24", 3), dst("10.0.2.25", 1), dst("10.0.2.26", 1)}
	rng := rand.New(rand.NewPCG(1, 2))
	final := []ipvs.Destination{pool[4], pool[1], pool[3], pool[0]}
	var fps []string
	for history := range 20 {
		f := newFakeKernel(t)
		h := newHandle(f, "", nil, testConfig())
		h.log = discard()
		for step := range 8 {
			var set []ipvs.Destination
			for _, d := range pool {
				if rng.IntN(2) == 0 {
					set = append(set, d)
				}
			}
			rng.Shuffle(len(set), func(i, j int) { set[i], set[j] = set[j], set[i] })
			if step == 7 {
				set = final
			}
			rep := mustApply(t, h, []ipvs.Service{svc(web, "mh", set...)})
			want := slices.Clone(set)
			ipvs.SortCanonical(want)
			var wantOrder []string
			for _, d := range want {
				wantOrder = append(wantOrder, fmt.Sprintf("%s/%d", d.AddrPort(), d.Weight))
			}
			if diff := cmp.Diff(wantOrder, f.order(web)); diff != "" {
				t.Fatalf("history %d step %d: kernel order (-want +got):\n%s", history, step, diff)
			}
			if got, want := rep.Fingerprint.Get(web), ipvs.Fingerprint(*f.service(web)); got != want {
				t.Fatalf("history %d step %d: report fingerprint %s, kernel %s", history, step, got, want)
			}
		}
		fps = append(fps, ipvs.Fingerprint(*f.service(web)))
	}
	for i, fp := range fps {
		if fp != fps[0] {
			t.Errorf("history %d ended with fingerprint %s, history 0 with %s", i, fp, fps[0])
		}
	}
}

// TestApplyDrainDeadline: a draining destination with connections is held
// until its deadline, then deleted with them, by the Apply that runs at the
// deadline (incremental, without a full read).
func TestApplyDrainDeadline(t *testing.T) {
	h, f, clk := newTestHandle(t)
	mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1))})
	b := netip.MustParseAddrPort("10.0.2.22:80")
	f.setConns(web, b, 3, 1)
	d := draining(dst("10.0.2.22", 1))
	d.DrainUntil = clk.t.Add(2 * time.Second)
	want := []ipvs.Service{svc(web, "mh", d, dst("10.0.2.21", 1))}
	mustApply(t, h, want)
	clk.t = clk.t.Add(2*time.Second - time.Nanosecond)
	mustApply(t, h, want)
	if diff := cmp.Diff([]string{"10.0.2.22:80/0", "10.0.2.21:80/1"}, f.order(web)); diff != "" {
		t.Fatalf("before the deadline (-want +got):\n%s", diff)
	}
	clk.t = clk.t.Add(time.Nanosecond)
	if rep := mustApply(t, h, want); rep.FullRead || rep.Ops != 1 {
		t.Errorf("at the deadline: full read %v, %d ops; want one incremental delete", rep.FullRead, rep.Ops)
	}
	if diff := cmp.Diff([]string{"10.0.2.21:80/1"}, f.order(web)); diff != "" {
		t.Errorf("at the deadline (-want +got):\n%s", diff)
	}
}
