package main

import (
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
)

// TestStopForRestart: SIGTERM is a stop for a restart only with Graceful
// Restart, a speaker, and a host that is not shutting down.
func TestStopForRestart(t *testing.T) {
	gr := &config.Config{BGP: &config.BGP{GracefulRestart: &config.GracefulRestart{RestartTime: 30 * time.Second}}}
	plain := &config.Config{BGP: &config.BGP{}}
	no := func() bool { return false }
	yes := func() bool { return true }
	tests := []struct {
		name     string
		cfg      *config.Config
		speaker  bool
		stopping func() bool
		want     bool
		why      string
	}{
		{"graceful restart", gr, true, no, true, "up to 30s"},
		{"host shutting down", gr, true, yes, false, "the host is shutting down"},
		{"no graceful restart", plain, true, no, false, ""},
		{"no bgp section", &config.Config{}, false, no, false, ""},
		{"not announcing by bgp", gr, false, no, false, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, why := stopForRestart(tc.cfg, tc.speaker, tc.stopping)
			if got != tc.want || !strings.Contains(why, tc.why) || (tc.why == "" && why != "") {
				t.Errorf("stopForRestart = %v, %q; want %v, %q", got, why, tc.want, tc.why)
			}
		})
	}
}

// TestCheckConfigSaysGracefulRestart: check-config tells the operator that
// SIGTERM keeps the routes.
func TestCheckConfigSaysGracefulRestart(t *testing.T) {
	var b strings.Builder
	describe(&b, &config.Config{BGP: &config.BGP{GracefulRestart: &config.GracefulRestart{RestartTime: 30 * time.Second}}})
	if want := "graceful restart 30s (SIGTERM keeps the routes for a restart: drain first"; !strings.Contains(b.String(), want) {
		t.Errorf("check-config printed:\n%s\nwant it to contain %q", b.String(), want)
	}
	b.Reset()
	describe(&b, &config.Config{BGP: &config.BGP{}})
	if strings.Contains(b.String(), "graceful restart") {
		t.Errorf("without graceful_restart check-config printed:\n%s", b.String())
	}
}
