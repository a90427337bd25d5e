package metrics

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestHealthLoadMetrics: the checker's own load is exported from the status
// snapshot (the promtool test checks the format), and absent when the
// checker reports none.
func TestHealthLoadMetrics(t *testing.T) {
	box := &statusBox{st: sampleStatus(100)}
	m := newTestMetrics(t, box)
	text := scrape(t, m)
	want := map[string]string{
		`directord_health_overloaded`:                          "1",
		`directord_health_interval_stretch`:                    "2",
		`directord_health_transit_interval_stretch`:            "1.25",
		`directord_health_probes_demanded_per_second`:          "1000",
		`directord_health_probes_achieved_per_second`:          "480.5",
		`directord_health_probes_in_flight`:                    "12",
		`directord_health_slots_skipped_total{reason="busy"}`:  "4",
		`directord_health_slots_skipped_total{reason="limit"}`: "0",
		`directord_health_slots_skipped_total{reason="late"}`:  "100",
		`directord_health_results_discarded_total`:             "7",
	}
	got := map[string]string{}
	for series := range want {
		got[series] = sample(t, text, series)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}

	st := sampleStatus(100)
	st.HealthLoad = nil
	box.set(st)
	if text := scrape(t, m); containsMetric(text, "directord_health_overloaded") {
		t.Errorf("health load exported without a load in the status")
	}
}

// containsMetric reports whether the exposition has a sample of name.
func containsMetric(text, name string) bool {
	for line := range strings.Lines(text) {
		if len(line) > len(name) && line[:len(name)] == name && (line[len(name)] == ' ' || line[len(name)] == '{') {
			return true
		}
	}
	return false
}
