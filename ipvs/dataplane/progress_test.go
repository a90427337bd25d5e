package dataplane

import (
	"context"
	"net/netip"
	"testing"

	"github.com/anycast-director/director/internal/progress"
	"github.com/anycast-director/director/ipvs"
)

// TestApplyReportsProgressPerService: Apply tells the context's progress
// function about every service it programs, so the announcer's watchdog
// sees a first pass of thousands of services moving rather than stuck.
func TestApplyReportsProgressPerService(t *testing.T) {
	h, _, _ := newTestHandle(t)
	var want []ipvs.Service
	for i := range 5 {
		k := ipvs.Key{VIP: netip.AddrFrom4([4]byte{198, 18, 0, byte(10 + i)}), Port: 80, Protocol: 6}
		want = append(want, svc(k, "wrr", dst("10.0.2.21", 1), dst("10.0.2.22", 1)))
	}
	reports := 0
	ctx := progress.With(context.Background(), func() { reports++ })
	if _, err := h.Apply(ctx, want); err != nil {
		t.Fatal(err)
	}
	if reports < len(want) {
		t.Errorf("Apply of %d new services reported progress %d times, want at least once per service", len(want), reports)
	}
}
