package dataplane

import (
	"context"
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/ipvs"
)

// TestApplyRepairsDrift: what someone else changes in an owned service is
// found by the next full read, programmed again and reported once, with
// what had changed; the first read of a restart (adoption) is no drift.
func TestApplyRepairsDrift(t *testing.T) {
	h, f, _ := newTestHandle(t)
	var repairs []Repair
	h.cfg.onRepair = func(r Repair) { repairs = append(repairs, r) }
	f.seed(svc(web, "mh", dst("10.0.2.21", 3))) // left by a previous daemon
	want := []ipvs.Service{svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 1))}
	mustApply(t, h, want)
	if len(repairs) != 0 {
		t.Fatalf("adopting at start reported repairs: %v", repairs)
	}

	k := kernelKey(web)
	if err := f.UpdateDestination(k, kernelDest(dst("10.0.2.21", 5))); err != nil {
		t.Fatal(err)
	}
	// The fast path trusts its record: nothing is noticed without a read.
	if rep := mustApply(t, h, want); rep.Ops != 0 || len(repairs) != 0 {
		t.Fatalf("without a full read: %d ops, repairs %v", rep.Ops, repairs)
	}
	h.Resync()
	rep := mustApply(t, h, want)
	if f.service(web).Destinations[1].Weight != 1 {
		t.Errorf("weight not restored: %+v", f.service(web))
	}
	wantRepairs := []Repair{{Kind: RepairService, Subject: "tcp/198.18.0.10:80", Detail: "destination 10.0.2.21:80 weight 1 -> 5"}}
	if diff := cmp.Diff(wantRepairs, repairs); diff != "" || rep.Ops != 1 {
		t.Errorf("weight set by hand: %d ops, repairs (-want +got):\n%s", rep.Ops, diff)
	}

	// ipvsadm -C: the service is created again with its destinations in
	// canonical order.
	if err := f.DelService(k); err != nil {
		t.Fatal(err)
	}
	h.Resync()
	mustApply(t, h, want)
	if got := f.order(web); !cmp.Equal(got, []string{"10.0.2.22:80/1", "10.0.2.21:80/1"}) {
		t.Errorf("after the flush the kernel lists %v", got)
	}
	if len(repairs) != 2 || repairs[1].Detail != "service deleted" {
		t.Errorf("flush: repairs %v", repairs)
	}

	// A restore that fails is reported failed, not repaired.
	if err := f.DelService(k); err != nil {
		t.Fatal(err)
	}
	f.fail["new-service "+web.String()] = errors.New("no memory")
	h.Resync()
	rep, err := h.Apply(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Failed[web] == nil || len(repairs) != 2 {
		t.Errorf("failed restore: failed %v, repairs %v", rep.Failed, repairs)
	}
}

func TestDescribeDrift(t *testing.T) {
	a := svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 1))
	for _, c := range []struct {
		now  *ipvs.Service
		want string
	}{
		{nil, "service deleted"},
		{ptr(svc(web, "wlc", dst("10.0.2.22", 1), dst("10.0.2.21", 1))), "scheduler mh -> wlc"},
		{ptr(svc(web, "mh", dst("10.0.2.22", 1))), "destination 10.0.2.21:80 deleted"},
		{ptr(svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1))), "destinations reordered"},
		{ptr(svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 1), dst("10.0.2.9", 1))), "destination 10.0.2.9:80 added"},
		{&a, ""},
	} {
		if got := ipvs.DescribeDrift(&a, c.now); got != c.want {
			t.Errorf("DescribeDrift to %+v = %q, want %q", c.now, got, c.want)
		}
	}
}

func ptr[T any](v T) *T { return &v }

// TestApplyReportsFlushSeenFirstByAFailedRead: when a pass that writes a
// changed service runs between the flush and the next full read, its read
// fails first; the full read after it still reports the flush as drift
// (the lab saw the service restored, silently, in one run of two).
func TestApplyReportsFlushSeenFirstByAFailedRead(t *testing.T) {
	h, f, _ := newTestHandle(t)
	var repairs []Repair
	h.cfg.onRepair = func(r Repair) { repairs = append(repairs, r) }
	want := []ipvs.Service{svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 1))}
	mustApply(t, h, want)
	if err := f.DelService(kernelKey(web)); err != nil {
		t.Fatal(err)
	}
	// A weight change makes the next pass write the service from its
	// record, which the kernel refuses, and read it back, which fails.
	f.strict = false
	changed := []ipvs.Service{svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 2))}
	if rep, err := h.Apply(context.Background(), changed); err != nil {
		t.Fatal(err)
	} else if rep.Failed[web] == nil && len(repairs) == 0 {
		t.Fatalf("the pass after the flush neither failed nor repaired: %+v", rep)
	}
	f.strict = true
	mustApply(t, h, changed)
	if f.service(web) == nil {
		t.Fatal("service not restored")
	}
	if len(repairs) != 1 || repairs[0].Kind != RepairService || repairs[0].Detail != "service deleted" {
		t.Errorf("repairs %v, want one %s repair of the deleted service", repairs, RepairService)
	}
}
