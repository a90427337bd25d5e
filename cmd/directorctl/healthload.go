package main

import (
	"fmt"
	"time"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// healthLoadLine renders the health checker's own load for status: whether
// it keeps up with the probes the checks ask for and, when it does not,
// since when, how much less often it probes and why.
func healthLoadLine(h *directorv1.HealthLoad, now time.Time) string {
	rates := fmt.Sprintf("%.0f of %.0f probes/s, %d in flight", h.GetAchievedPerSecond(), h.GetDemandedPerSecond(), h.GetInFlight())
	if !h.GetOverloaded() {
		return "Health   keeping up: " + rates
	}
	line := fmt.Sprintf("Health   OVERLOADED for %s: %s", ago(tsTime(h.GetSince()), now), rates)
	if st := h.GetIntervalStretch(); st > 1 {
		line += fmt.Sprintf("; probing every target %.0fx less often", st)
	}
	if r := h.GetReason(); r != "" {
		line += "; " + r
	}
	return line + " (skipped slots and discarded results are not failures)"
}
