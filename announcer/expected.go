package announcer

import (
	"net/netip"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
)

// Expected returns the plan for cfg as if every backend were healthy, the
// learn period and hold-downs were over, and no operator override were set:
// the steady state `directord check-config` prints.
func Expected(cfg *config.Config) Plan {
	now := time.Unix(0, 0).Add(24 * time.Hour)
	snap := health.Snapshot{}
	for _, t := range Targets(cfg) {
		snap[t.Key()] = health.Result{State: health.Up, Reason: "assumed healthy", Probes: 1}
	}
	since := map[netip.Addr]time.Time{}
	for i := range cfg.Services {
		since[cfg.Services[i].VIP] = time.Unix(0, 0)
	}
	return plan(Input{Config: cfg, Health: snap, Now: now,
		Memory: Memory{Learned: true, ServableSince: since}})
}
