package dataplane

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/ipvs"
)

// batchingFake is the fake kernel taking writes in batches, as genlKernel
// does: it records how many writes each request carried.
type batchingFake struct {
	*fakeKernel
	requests []int
	// logged, when set, is the log so far; loggedAt holds how many
	// "services programmed" summary lines it had when each request was
	// sent.
	logged   *bytes.Buffer
	loggedAt []int
}

func (b *batchingFake) WriteBatch(writes []kernelWrite) []error {
	b.requests = append(b.requests, len(writes))
	if b.logged != nil {
		b.loggedAt = append(b.loggedAt, strings.Count(b.logged.String(), "IPVS services programmed"))
	}
	errs := make([]error, len(writes))
	for i, w := range writes {
		errs[i] = w.run(b.fakeKernel)
	}
	return errs
}

func newBatchingHandle(t *testing.T) (*Handle, *batchingFake) {
	b := &batchingFake{fakeKernel: newFakeKernel(t), logged: &bytes.Buffer{}}
	cfg := defaultConfig()
	cfg.now = (&fakeClock{t: time.Unix(1000, 0)}).now
	return newHandle(b, "", slog.New(slog.NewTextHandler(b.logged, nil)), cfg), b
}

// manyServices is n services of three destinations, 10.0.2.21 at weight w.
func manyServices(n, w int) []ipvs.Service {
	out := make([]ipvs.Service, n)
	for i := range out {
		k := ipvs.Key{VIP: netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)}), Port: 80, Protocol: 6}
		out[i] = svc(k, "mh", dst("10.0.2.23", 1), dst("10.0.2.22", 1), dst("10.0.2.21", w))
	}
	return out
}

// TestApplyBatchesWrites: the writes of many services reach the kernel in a
// few requests, one per write of the longest service per maxBatch
// services, instead of one request per write. A reload changing one weight
// in 100 services is two requests, and the services' summary line comes
// after both (a log line is slow under emulation).
func TestApplyBatchesWrites(t *testing.T) {
	h, b := newBatchingHandle(t)
	rep := mustApply(t, h, manyServices(100, 1))
	// 64 + 36 services, each created, given 3 destinations, and its mh
	// table bound after them: 5 waves each.
	want := []int{64, 64, 64, 64, 64, 36, 36, 36, 36, 36}
	if fmt.Sprint(b.requests) != fmt.Sprint(want) || rep.Ops != 500 {
		t.Errorf("creating 100 services: requests of %v writes (%d ops), want %v (500)", b.requests, rep.Ops, want)
	}
	b.requests = nil
	rep = mustApply(t, h, manyServices(100, 2))
	if fmt.Sprint(b.requests) != "[64 36]" || rep.Ops != 100 || rep.Reads != 0 {
		t.Errorf("one weight in 100 services: requests of %v writes, %d ops, %d reads; want [64 36], 100, 0", b.requests, rep.Ops, rep.Reads)
	}
	if fmt.Sprint(b.loggedAt[len(b.loggedAt)-2:]) != "[1 1]" || strings.Count(b.logged.String(), "IPVS services programmed") != 2 {
		t.Errorf("summary lines logged before each request: %v; want none of the reload's before its last request", b.loggedAt)
	}
	if !strings.Contains(b.logged.String(), `count=100 ops=100 first=tcp/198.18.0.0:80 last=tcp/198.18.0.99:80 reason="weight 1 -> 2 (100); each is logged at debug level"`) {
		t.Errorf("the reload's summary line is not in the log:\n%s", b.logged.String())
	}
	for _, s := range manyServices(100, 2) {
		if got := b.order(s.Key); fmt.Sprint(got) != "[10.0.2.23:80/1 10.0.2.22:80/1 10.0.2.21:80/2]" {
			t.Fatalf("%s in the kernel: %v", s.Key, got)
		}
	}
}

// TestApplyBatchStopsAServiceAtItsFailure: in a batch, a service whose
// write fails gets none of its later writes (the strict fake fails the test
// on a destination added to a missing service), and the others are
// written in full.
func TestApplyBatchStopsAServiceAtItsFailure(t *testing.T) {
	h, b := newBatchingHandle(t)
	want := manyServices(10, 1)
	bad := want[4].Key
	b.fail["new-service "+bad.String()] = syscall.ENOMEM
	rep, err := h.Apply(context.Background(), want)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Failed) != 1 || !errors.Is(rep.Failed[bad], syscall.ENOMEM) {
		t.Errorf("failed %v, want only %s with ENOMEM", rep.Failed, bad)
	}
	if rep.Ops != 46 {
		t.Errorf("%d writes issued, want 46 (9 services x 5, and the failed create)", rep.Ops)
	}
	for i, s := range want {
		if got := b.service(s.Key) != nil; got != (i != 4) {
			t.Errorf("%s in the kernel: %v", s.Key, got)
		}
	}
}
