package dataplane

import (
	"context"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/ipvs"
)

func discard() *slog.Logger { return slog.New(slog.DiscardHandler) }

// netipComparers let go-cmp compare netip values, whose fields are unexported.
func netipComparers() []cmp.Option {
	return []cmp.Option{
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
	}
}

// fakeClock is a manually advanced clock for the resync interval.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

func testConfig() config {
	c := defaultConfig()
	c.now = (&fakeClock{t: time.Unix(1000, 0)}).now
	return c
}

func newTestHandle(t *testing.T) (*Handle, *fakeKernel, *fakeClock) {
	f := newFakeKernel(t)
	clk := &fakeClock{t: time.Unix(1000, 0)}
	cfg := defaultConfig()
	cfg.now = clk.now
	return newHandle(f, "", discard(), cfg), f, clk
}

func mustApply(t *testing.T, h *Handle, want []ipvs.Service) Report {
	t.Helper()
	rep, err := h.Apply(context.Background(), want)
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	for k, err := range rep.Failed {
		t.Fatalf("Apply failed for %s: %v", k, err)
	}
	return rep
}

var api = ipvs.Key{VIP: netip.MustParseAddr("198.18.0.11"), Port: 443, Protocol: 6}

func TestApplyCreatesAndIsIdempotent(t *testing.T) {
	for _, resync := range []time.Duration{DefaultResyncInterval, 0} {
		t.Run("resync="+resync.String(), func(t *testing.T) {
			h, f, _ := newTestHandle(t)
			h.cfg.resync = resync
			mh := svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 1))
			mh.Flags = []string{"mh-port", "mh-fallback"}
			want := []ipvs.Service{mh, svc(api, "wlc", dst("10.0.2.31", 5))}
			rep := mustApply(t, h, want)
			if rep.Ops != 6 || f.writes != 6 {
				t.Errorf("first Apply: report ops %d, kernel writes %d, want 6 and 6 (mh bound after its 2 destinations)", rep.Ops, f.writes)
			}
			if got := f.service(web); !cmp.Equal(got.Flags, []string{"mh-fallback", "mh-port"}) {
				t.Errorf("kernel flags of %s = %q", web, got.Flags)
			}
			before := f.writes
			rep = mustApply(t, h, want)
			if rep.Ops != 0 || f.writes != before {
				t.Errorf("second Apply: report ops %d, kernel writes %d (was %d), want no writes", rep.Ops, f.writes, before)
			}
			if rep.FullRead != (resync == 0) {
				t.Errorf("second Apply FullRead = %v with resync %s", rep.FullRead, resync)
			}
			if resync != 0 && rep.Reads != 0 {
				t.Errorf("second Apply with unchanged input read %d times, want 0", rep.Reads)
			}
			wantFP := map[ipvs.Key]string{web: ipvs.Fingerprint(*f.service(web)), api: ipvs.Fingerprint(*f.service(api))}
			if diff := cmp.Diff(wantFP, rep.Fingerprint.Map()); diff != "" {
				t.Errorf("fingerprints (-kernel +report):\n%s", diff)
			}
		})
	}
}

func TestApplyAdoptsWithoutRecreating(t *testing.T) {
	h, f, _ := newTestHandle(t)
	// A previous daemon left the service, in canonical order, with a live
	// connection and a stale weight.
	f.seed(svc(web, "mh", withConns(dst("10.0.2.22", 1), 3, 0), dst("10.0.2.21", 1)))
	gen := f.generation(web)
	rep := mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 4))})
	if !rep.FullRead {
		t.Error("first Apply did not read the kernel")
	}
	if diff := cmp.Diff([]string{"10.0.2.22:80/4", "10.0.2.21:80/1"}, f.order(web)); diff != "" {
		t.Errorf("order (-want +got):\n%s", diff)
	}
	if rep.Ops != 1 {
		t.Errorf("adoption issued %d writes, want 1 (the weight)", rep.Ops)
	}
	if f.generation(web) != gen {
		t.Error("adoption re-created the service")
	}
	if got := f.service(web).Destinations[0].Conns.Active; got != 3 {
		t.Errorf("active connections after adoption = %d, want 3", got)
	}
}

func TestApplyAdoptionReordersKeepingConnections(t *testing.T) {
	h, f, _ := newTestHandle(t)
	// ipvsadm-made order (ascending), connections on both.
	f.seed(svc(web, "mh", withConns(dst("10.0.2.21", 1), 2, 0), withConns(dst("10.0.2.22", 1), 5, 1)))
	mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1))})
	got := f.service(web)
	if diff := cmp.Diff([]string{"10.0.2.22:80/1", "10.0.2.21:80/1"}, f.order(web)); diff != "" {
		t.Fatalf("order (-want +got):\n%s", diff)
	}
	if got.Destinations[0].Conns.Active != 5 || got.Destinations[1].Conns.Active != 2 {
		t.Errorf("connections lost in reorder: %+v", got.Destinations)
	}
}

func TestApplyTouchesOnlyOwned(t *testing.T) {
	h, f, _ := newTestHandle(t)
	foreign := svc(ipvs.Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 53, Protocol: 17}, "rr", dst("10.9.9.9", 7), dst("10.9.9.8", 1))
	f.seed(foreign)
	mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1)), svc(api, "mh", dst("10.0.2.31", 1))})
	rep := mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1))})
	if f.service(api) != nil {
		t.Error("service dropped from the desired state was not deleted")
	}
	if rep.Fingerprint.Get(api) != "" {
		t.Error("deleted service still has a fingerprint")
	}
	if diff := cmp.Diff([]string{"10.9.9.9:80/7", "10.9.9.8:80/1"}, f.order(foreign.Key)); diff != "" {
		t.Errorf("foreign service changed (-want +got):\n%s", diff)
	}
	// Even an empty desired state only deletes what was owned.
	mustApply(t, h, nil)
	if f.service(web) != nil || f.service(foreign.Key) == nil {
		t.Errorf("empty Apply: web present=%v foreign present=%v, want false true", f.service(web) != nil, f.service(foreign.Key) != nil)
	}
}

func TestApplyIsolatesFailingService(t *testing.T) {
	h, f, _ := newTestHandle(t)
	f.fail["new-service "+web.String()] = syscall.ENOMEM
	want := []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1)), svc(api, "mh", dst("10.0.2.31", 1))}
	rep, err := h.Apply(context.Background(), want)
	if err != nil {
		t.Fatalf("Apply returned global error %v for one failing service", err)
	}
	if err := rep.Failed[web]; !errors.Is(err, syscall.ENOMEM) {
		t.Errorf("Failed[%s] = %v, want ENOMEM", web, err)
	}
	if len(rep.Failed) != 1 || f.service(api) == nil {
		t.Errorf("other service not applied: failed %v, api present %v", rep.Failed, f.service(api) != nil)
	}
	delete(f.fail, "new-service "+web.String())
	rep = mustApply(t, h, want)
	if !rep.FullRead || f.service(web) == nil {
		t.Errorf("retry: FullRead %v, web present %v; want a full read that creates it", rep.FullRead, f.service(web) != nil)
	}
}

func TestApplyInvalidServiceKeepsKernelState(t *testing.T) {
	h, f, _ := newTestHandle(t)
	mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1))})
	bad := svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.21", 2))
	rep, err := h.Apply(context.Background(), []ipvs.Service{bad, svc(api, "rr", dst("10.0.2.31", 1))})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed[web] == nil || !strings.Contains(rep.Failed[web].Error(), "listed twice") {
		t.Errorf("Failed[%s] = %v, want the validation error", web, rep.Failed[web])
	}
	if f.service(web) == nil || f.service(api) == nil {
		t.Error("invalid entry deleted its service, or blocked the valid one")
	}
}

func TestApplyGlobalFailure(t *testing.T) {
	h, f, _ := newTestHandle(t)
	f.failGS = syscall.EPERM
	_, err := h.Apply(context.Background(), []ipvs.Service{svc(web, "mh")})
	if !errors.Is(err, syscall.EPERM) {
		t.Fatalf("Apply error = %v, want EPERM from listing services", err)
	}
	if f.writes != 0 {
		t.Errorf("wrote %d times without a readable kernel state", f.writes)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := h.Apply(ctx, nil); !errors.Is(err, context.Canceled) {
		t.Errorf("Apply with cancelled context = %v", err)
	}
}

func TestApplyDrain(t *testing.T) {
	h, f, _ := newTestHandle(t)
	mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1))})
	b := netip.MustParseAddrPort("10.0.2.22:80")
	f.setConns(web, b, 1, 2)
	want := []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1), draining(dst("10.0.2.22", 1)))}
	rep := mustApply(t, h, want)
	if diff := cmp.Diff([]string{"10.0.2.22:80/0", "10.0.2.21:80/1"}, f.order(web)); diff != "" {
		t.Fatalf("draining (-want +got):\n%s", diff)
	}
	if rep.FullRead {
		t.Error("drain step should be incremental")
	}
	rep = mustApply(t, h, want) // still connections: nothing to do, but must look
	if rep.Ops != 0 || rep.Reads != 1 {
		t.Errorf("held drain: ops %d reads %d, want 0 and 1 (re-read the draining service)", rep.Ops, rep.Reads)
	}
	f.setConns(web, b, 0, 0)
	mustApply(t, h, want)
	if diff := cmp.Diff([]string{"10.0.2.21:80/1"}, f.order(web)); diff != "" {
		t.Errorf("drained (-want +got):\n%s", diff)
	}
}

func TestApplyIncrementalAndResync(t *testing.T) {
	h, f, clk := newTestHandle(t)
	want := []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1)), svc(api, "mh", dst("10.0.2.31", 1))}
	mustApply(t, h, want)
	want[0].Destinations[1].Weight = 5 // the caller mutates its slice: Apply kept a copy
	rep := mustApply(t, h, want)
	// Written from the record, not read first: a reload changing a weight
	// in every service costs one write per service.
	if rep.FullRead || rep.Reads != 0 || rep.Ops != 1 {
		t.Errorf("single weight change: full %v reads %d ops %d, want false 0 1", rep.FullRead, rep.Reads, rep.Ops)
	}
	// Someone changes a weight by hand; the next resync repairs it.
	f.svcs[fkey(kernelKey(api))].dests[0].Weight = 9
	if rep := mustApply(t, h, want); rep.Ops != 0 {
		t.Errorf("before the resync interval Apply wrote %d times", rep.Ops)
	}
	clk.t = clk.t.Add(DefaultResyncInterval)
	rep = mustApply(t, h, want)
	if !rep.FullRead || rep.Ops != 1 || f.order(api)[0] != "10.0.2.31:80/1" {
		t.Errorf("resync: full %v ops %d order %v, want the weight repaired", rep.FullRead, rep.Ops, f.order(api))
	}
	// Resync() forces the next full read, which finds a hand-made reorder.
	ds := f.svcs[fkey(kernelKey(web))].dests
	ds[0], ds[1] = ds[1], ds[0]
	h.Resync()
	rep = mustApply(t, h, want)
	if !rep.FullRead || rep.Ops != 2 {
		t.Errorf("Resync: full read %v, %d ops; want a full read and 2 ops (re-insert one destination)", rep.FullRead, rep.Ops)
	}
	if diff := cmp.Diff([]string{"10.0.2.22:80/5", "10.0.2.21:80/1"}, f.order(web)); diff != "" {
		t.Errorf("order after resync (-want +got):\n%s", diff)
	}
	if rep := mustApply(t, h, want); rep.Ops != 0 {
		t.Errorf("Apply after the repair wrote %d times", rep.Ops)
	}
}

func TestApplyDriftDuringIncrementalIsRepaired(t *testing.T) {
	h, f, _ := newTestHandle(t)
	want := []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1))}
	mustApply(t, h, want)
	delete(f.svcs, fkey(kernelKey(web))) // deleted by hand
	f.strict = false
	want[0].Destinations[0].Weight = 2
	rep, err := h.Apply(context.Background(), want)
	if err != nil || rep.Failed[web] == nil {
		t.Fatalf("Apply on a vanished service: err %v failed %v, want a per-service failure", err, rep.Failed)
	}
	f.strict = true
	rep = mustApply(t, h, want)
	if !rep.FullRead || f.service(web) == nil {
		t.Errorf("after the failure: full %v present %v, want it re-created", rep.FullRead, f.service(web) != nil)
	}
}

// TestApplyRepairsDriftItsWriteRunsInto: a weight change is written from the
// record; when the kernel refuses it because the destination was deleted by
// hand, the service is read back and repaired in the same Apply, as when
// every changed service was read before it was written.
func TestApplyRepairsDriftItsWriteRunsInto(t *testing.T) {
	h, f, _ := newTestHandle(t)
	want := []ipvs.Service{svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 1))}
	mustApply(t, h, want)
	if err := f.DelDestination(kernelKey(web), kernelDest(dst("10.0.2.21", 1))); err != nil {
		t.Fatal(err)
	}
	f.strict = false // the first write, from the record, meets the drift
	want[0].Destinations[1].Weight = 2
	rep, err := h.Apply(context.Background(), want)
	f.strict = true
	if err != nil || len(rep.Failed) != 0 {
		t.Fatalf("Apply: err %v, failed %v; want the drift repaired", err, rep.Failed)
	}
	if rep.Reads != 1 {
		t.Errorf("reads %d, want 1 (the service read back after the refused write)", rep.Reads)
	}
	if diff := cmp.Diff([]string{"10.0.2.22:80/1", "10.0.2.21:80/2"}, f.order(web)); diff != "" {
		t.Errorf("kernel after the repair (-want +got):\n%s", diff)
	}
	if rep := mustApply(t, h, want); rep.Ops != 0 {
		t.Errorf("Apply after the repair wrote %d times", rep.Ops)
	}
}

func TestApplyDuplicateKeys(t *testing.T) {
	h, f, _ := newTestHandle(t)
	rep, err := h.Apply(context.Background(), []ipvs.Service{svc(web, "mh"), svc(web, "rr")})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed[web] == nil || f.service(web) != nil {
		t.Errorf("duplicate key: failed %v, created %v; want failed and not created", rep.Failed[web], f.service(web) != nil)
	}
}

func TestPlanDoesNotWrite(t *testing.T) {
	h, f, _ := newTestHandle(t)
	f.seed(svc(web, "wlc", dst("10.0.2.21", 1)))
	ops, err := h.Plan(context.Background(), []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 2))})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{
		"update service tcp/198.18.0.10:80 scheduler mh (scheduler wlc -> mh)",
		"update destination tcp/198.18.0.10:80 -> 10.0.2.21:80 dr weight 2 (weight 1 -> 2)",
	}
	if diff := cmp.Diff(want, opLines(ops)); diff != "" {
		t.Errorf("plan (-want +got):\n%s", diff)
	}
	if f.writes != 0 {
		t.Errorf("Plan wrote %d times", f.writes)
	}
}

func TestStats(t *testing.T) {
	h, f, _ := newTestHandle(t)
	mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 2))})
	f.seed(svc(api, "rr", dst("10.0.2.31", 1))) // not owned: not reported
	f.setConns(web, netip.MustParseAddrPort("10.0.2.21:80"), 4, 1)
	fs := f.svcs[fkey(kernelKey(web))]
	fs.svc.Stats.PacketsIn = 42
	fs.dests[1].Stats.BytesOut = 1000
	got, err := h.Stats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := map[ipvs.Key]ipvs.ServiceStats{web: {
		Stats: ipvs.Stats{ActiveConns: 4, InactiveConns: 1, PacketsIn: 42},
		Destinations: []ipvs.DestinationStats{
			{Address: netip.MustParseAddrPort("10.0.2.22:80"), Weight: 2},
			{Address: netip.MustParseAddrPort("10.0.2.21:80"), Weight: 1, Stats: ipvs.Stats{ActiveConns: 4, InactiveConns: 1, BytesOut: 1000}},
		},
	}}
	if diff := cmp.Diff(want, got, netipComparers()...); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestOpenWithoutIPVS(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "ip_vs")
	_, err := Open("", discard(), func(c *config) { c.procIPVS = missing })
	if !errors.Is(err, ErrNotAvailable) {
		t.Fatalf("Open = %v, want ErrNotAvailable", err)
	}
	for _, s := range []string{"IPVS is not available in this kernel", "modprobe ip_vs ip_vs_mh"} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
}

func TestOpenWithFakeKernel(t *testing.T) {
	present := filepath.Join(t.TempDir(), "ip_vs")
	if err := os.WriteFile(present, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFakeKernel(t)
	h, err := Open("", nil, func(c *config) {
		c.procIPVS = present
		c.newKernel = func(string) (kernel, error) { return f, nil }
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := h.Close(); err != nil || !f.closed {
		t.Errorf("Close = %v, kernel closed %v", err, f.closed)
	}
	if _, err := h.Apply(context.Background(), nil); err == nil {
		t.Error("Apply on a closed handle succeeded")
	}
	if _, err := Open("/nonexistent/netns", nil, func(c *config) { c.procIPVS = present }); err == nil || !strings.Contains(err.Error(), "/nonexistent/netns") {
		t.Errorf("Open with a missing namespace = %v", err)
	}
}

// BenchmarkApplyFake measures Apply's own work (diffing, bookkeeping) at
// 10,000 services x 5 destinations against the fake kernel, without netlink.
func BenchmarkApplyFake(b *testing.B) {
	const n = 10000
	want := make([]ipvs.Service, n)
	for i := range n {
		s := ipvs.Service{Key: ipvs.Key{VIP: netip.AddrFrom4([4]byte{100, 64, byte(i >> 8), byte(i)}), Port: 80, Protocol: 6}, Scheduler: "mh", Flags: []string{"mh-port"}}
		for j := range 5 {
			s.Destinations = append(s.Destinations, ipvs.Destination{Address: netip.AddrFrom4([4]byte{10, byte(1 + j), byte(i >> 8), byte(i)}), Port: 80, Weight: 1, Forwarding: ipvs.DirectRoute})
		}
		// In canonical order, as the announcer's plan lists them.
		ipvs.SortCanonical(s.Destinations)
		want[i] = s
	}
	f := newFakeKernel(b)
	cfg := defaultConfig()
	cfg.resync = time.Hour
	h := newHandle(f, "", discard(), cfg)
	if _, err := h.Apply(context.Background(), want); err != nil {
		b.Fatal(err)
	}
	b.Run("noop", func(b *testing.B) {
		for b.Loop() {
			if rep, err := h.Apply(context.Background(), want); err != nil || rep.Ops != 0 {
				b.Fatalf("no-op Apply: %v, %d ops", err, rep.Ops)
			}
		}
	})
	b.Run("weight", func(b *testing.B) {
		i := 0
		for b.Loop() {
			i++
			want[i%n].Destinations[0].Weight = 1 + i%2
			if rep, err := h.Apply(context.Background(), want); err != nil || rep.Ops > 1 {
				b.Fatalf("weight Apply: %v, %d ops", err, rep.Ops)
			}
		}
	})
	b.Run("fullread", func(b *testing.B) {
		for b.Loop() {
			h.Resync()
			if rep, err := h.Apply(context.Background(), want); err != nil || rep.Ops != 0 {
				b.Fatalf("full-read Apply: %v, %d ops", err, rep.Ops)
			}
		}
	})
}

func TestCurrentReadsWithoutOwning(t *testing.T) {
	h, f, _ := newTestHandle(t)
	// A previous daemon left web in the kernel; api is not there.
	other := newHandle(f, "", discard(), testConfig())
	mustApply(t, other, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 3), dst("10.0.2.22", 1))})
	writes := f.writes

	got, err := h.Current(context.Background(), []ipvs.Key{web, api})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Key != web || len(got[0].Destinations) != 2 {
		t.Fatalf("Current = %+v, want web with its two destinations", got)
	}
	weights := map[string]int{}
	for _, d := range got[0].Destinations {
		weights[d.Address.String()] = d.Weight
	}
	if weights["10.0.2.21"] != 3 || weights["10.0.2.22"] != 1 {
		t.Errorf("weights = %v, want the kernel's", weights)
	}
	if f.writes != writes {
		t.Errorf("Current wrote to the kernel (%d writes)", f.writes-writes)
	}
	// Reading does not make the handle own web: an Apply without it must not delete it.
	mustApply(t, h, nil)
	if again, _ := h.Current(context.Background(), []ipvs.Key{web}); len(again) != 1 {
		t.Errorf("an Apply after Current deleted a service it never owned")
	}
}

func TestFingerprintsAreSnapshots(t *testing.T) {
	h, _, _ := newTestHandle(t)
	first := mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1)), svc(api, "mh", dst("10.0.2.31", 1))})
	before := first.Fingerprint.Get(web)
	second := mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 2)), svc(api, "mh", dst("10.0.2.31", 1))})
	if first.Fingerprint.Get(web) != before {
		t.Errorf("a later Apply changed an earlier report's fingerprint")
	}
	if second.Fingerprint.Get(web) == before || second.Fingerprint.Get(api) != first.Fingerprint.Get(api) {
		t.Errorf("fingerprints after a weight change: web %q (was %q), api %q (was %q)",
			second.Fingerprint.Get(web), before, second.Fingerprint.Get(api), first.Fingerprint.Get(api))
	}
	if second.Fingerprint.Len() != 2 || len(second.Fingerprint.Map()) != 2 {
		t.Errorf("Len %d, Map %d, want 2", second.Fingerprint.Len(), len(second.Fingerprint.Map()))
	}
}

func TestApplyStableOrderFastPathFallsBack(t *testing.T) {
	// Between resyncs, Apply compares position by position when the keys
	// are those of the last call in the same order. Every other shape of
	// change (reorder, a key swapped at the same length, a repeat, a drop)
	// must take the general path and still leave the kernel right.
	h, f, _ := newTestHandle(t)
	third := ipvs.Key{VIP: netip.MustParseAddr("198.18.0.12"), Port: 53, Protocol: 17}
	a := func(w int) ipvs.Service { return svc(web, "mh", dst("10.0.2.21", w)) }
	b := func(w int) ipvs.Service { return svc(api, "mh", dst("10.0.2.31", w)) }
	c := func(w int) ipvs.Service { return svc(third, "mh", dst("10.0.2.41", w)) }
	steps := []struct {
		name   string
		want   []ipvs.Service
		failed []ipvs.Key
		kernel map[ipvs.Key]string // "" means absent
	}{
		{"create", []ipvs.Service{a(1), b(1)}, nil, map[ipvs.Key]string{web: "10.0.2.21:80/1", api: "10.0.2.31:80/1", third: ""}},
		{"same order, one change", []ipvs.Service{a(1), b(2)}, nil, map[ipvs.Key]string{web: "10.0.2.21:80/1", api: "10.0.2.31:80/2"}},
		{"reordered with a change", []ipvs.Service{b(2), a(3)}, nil, map[ipvs.Key]string{web: "10.0.2.21:80/3", api: "10.0.2.31:80/2"}},
		{"a key swapped at the same length", []ipvs.Service{b(2), c(1)}, nil, map[ipvs.Key]string{web: "", api: "10.0.2.31:80/2", third: "10.0.2.41:80/1"}},
		{"a repeat", []ipvs.Service{b(4), b(5)}, []ipvs.Key{api}, map[ipvs.Key]string{api: "10.0.2.31:80/2", third: ""}},
		{"after the repeat", []ipvs.Service{b(4), c(2)}, nil, map[ipvs.Key]string{api: "10.0.2.31:80/4", third: "10.0.2.41:80/2"}},
		{"a drop", []ipvs.Service{c(2)}, nil, map[ipvs.Key]string{api: "", third: "10.0.2.41:80/2"}},
		{"unchanged", []ipvs.Service{c(2)}, nil, map[ipvs.Key]string{third: "10.0.2.41:80/2"}},
	}
	for _, st := range steps {
		rep, err := h.Apply(context.Background(), st.want)
		if err != nil {
			t.Fatalf("%s: Apply: %v", st.name, err)
		}
		for k := range rep.Failed {
			if !slices.Contains(st.failed, k) {
				t.Errorf("%s: %s failed: %v", st.name, k, rep.Failed[k])
			}
		}
		for _, k := range st.failed {
			if rep.Failed[k] == nil {
				t.Errorf("%s: %s did not fail, want it reported", st.name, k)
			}
		}
		for k, want := range st.kernel {
			got := ""
			if f.service(k) != nil {
				got = strings.Join(f.order(k), " ")
			}
			if got != want {
				t.Errorf("%s: kernel has %s = %q, want %q", st.name, k, got, want)
			}
		}
		if st.name == "unchanged" && rep.Ops != 0 {
			t.Errorf("unchanged: %d writes, want 0", rep.Ops)
		}
	}
}

// TestOwnDeletesWhatAPreviousProcessCreated: services handed to Own (what
// the state directory says a previous daemon created) are deleted once the
// desired state does not list them, even after the handle was idle in
// between; a wanted one is adopted; a missing one is forgotten; foreign
// services stay untouched.
func TestOwnDeletesWhatAPreviousProcessCreated(t *testing.T) {
	h, f, _ := newTestHandle(t)
	foreign := svc(ipvs.Key{VIP: netip.MustParseAddr("192.0.2.1"), Port: 53, Protocol: 17}, "rr", dst("10.9.9.9", 7))
	gone := ipvs.Key{VIP: netip.MustParseAddr("198.18.0.99"), Port: 80, Protocol: 6}
	f.seed(foreign)
	f.seed(svc(web, "mh", dst("10.0.2.21", 1)))
	f.seed(svc(api, "mh")) // no destinations left
	h.Own([]ipvs.Key{web, api, gone})
	mustApply(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1))})
	if f.service(api) != nil {
		t.Error("a service owned by the previous process and not wanted was not deleted")
	}
	if f.service(web) == nil || f.service(foreign.Key) == nil {
		t.Errorf("web present=%v foreign present=%v, want both", f.service(web) != nil, f.service(foreign.Key) != nil)
	}
	if _, ok := h.entries[gone]; ok {
		t.Error("a key the kernel does not have is still tracked")
	}
}
