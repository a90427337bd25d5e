package main

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

func TestHealthLoadLine(t *testing.T) {
	now := time.Unix(1_700_000_000, 0)
	keeping := &directorv1.HealthLoad{DemandedPerSecond: 1000, AchievedPerSecond: 998.4, InFlight: 12, IntervalStretch: 1}
	if got, want := healthLoadLine(keeping, now), "Health   keeping up: 998 of 1000 probes/s, 12 in flight"; got != want {
		t.Errorf("keeping up:\n got %q\nwant %q", got, want)
	}
	over := &directorv1.HealthLoad{Overloaded: true, Since: timestamppb.New(now.Add(-3 * time.Minute)),
		IntervalStretch: 2, DemandedPerSecond: 1000, AchievedPerSecond: 480, InFlight: 900,
		Reason: "300 probes started late in 1s"}
	want := "Health   OVERLOADED for 3m0s: 480 of 1000 probes/s, 900 in flight; probing every target 2x less often; " +
		"300 probes started late in 1s (skipped slots and discarded results are not failures)"
	if got := healthLoadLine(over, now); got != want {
		t.Errorf("overloaded:\n got %q\nwant %q", got, want)
	}
}
