package metrics

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/health"
)

// healthLoadCollector exports whether the health checker keeps up with its
// targets, from the status snapshot: a director that cannot keep up probes
// less often and says so here (see health.Load).
type healthLoadCollector struct {
	status func() *announcer.Status

	overloaded, stretch, transitStretch, demanded, achieved, inFlight, skipped, discarded *prometheus.Desc
}

func newHealthLoadCollector(status func() *announcer.Status) *healthLoadCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &healthLoadCollector{
		status:         status,
		overloaded:     d("directord_health_overloaded", "1 while the health checker cannot keep up: it skips slots, starts probes late, discards late results or stretches its intervals (directorctl status says why)."),
		stretch:        d("directord_health_interval_stretch", "Factor every configured check interval is multiplied by: 1 when the checker keeps up, up to 8 while it is too slow for its targets."),
		transitStretch: d("directord_health_transit_interval_stretch", "Factor the check intervals of backends in transition (down, or failing while up) are multiplied by: at most directord_health_interval_stretch, and only as far as they need to fit in a quarter of the checker's measured capacity, so a backend that comes back is seen sooner."),
		demanded:       d("directord_health_probes_demanded_per_second", "Probe rate the configured checks ask for."),
		achieved:       d("directord_health_probes_achieved_per_second", "Probe rate completed in the last second."),
		inFlight:       d("directord_health_probes_in_flight", "Probes running now."),
		skipped:        d("directord_health_slots_skipped_total", "Probe slots skipped by the checker itself, by reason: busy (the previous probe still ran), limit (probes in flight at their limit), late (reached an interval late). A skipped slot is not a failure.", "reason"),
		discarded:      d("directord_health_results_discarded_total", "Probe results thrown away because the checker sent the probe or noticed its timeout too late, or stalled while it ran, to blame the backend."),
	}
}

// Describe sends every descriptor.
func (c *healthLoadCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.overloaded, c.stretch, c.transitStretch, c.demanded, c.achieved, c.inFlight, c.skipped, c.discarded} {
		ch <- d
	}
}

// Collect emits the snapshot's health load, if the checker reports one.
func (c *healthLoadCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	if st == nil || st.HealthLoad == nil {
		return
	}
	l := st.HealthLoad
	e := emitter{ch}
	e.gauge(c.overloaded, b2f(l.Overloaded))
	e.gauge(c.stretch, l.Stretch)
	e.gauge(c.transitStretch, l.TransitStretch)
	e.gauge(c.demanded, l.Demanded)
	e.gauge(c.achieved, l.Achieved)
	e.gauge(c.inFlight, float64(l.InFlight))
	for _, r := range []string{health.SkipBusy, health.SkipLimit, health.SkipLate} {
		e.counter(c.skipped, l.Skipped[r], r)
	}
	e.counter(c.discarded, l.Discarded)
}
