package main

import (
	"context"
	"strings"
	"testing"
	"time"
)

func TestSampleLoadReportsWhatItSaw(t *testing.T) {
	got := sampleLoad(context.Background(), time.Hour)()
	// One sample at the start and one when stopped; the hour never passes.
	if !strings.Contains(got, "(2 samples)") || !strings.Contains(got, "mean ") || !strings.Contains(got, "peak ") {
		t.Errorf("sampleLoad = %q, want a mean and a peak over 2 samples", got)
	}
}
