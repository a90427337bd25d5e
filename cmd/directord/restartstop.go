package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/anycast-director/director/config"
)

// restartStopBudget is what a stop for a restart may take: releasing the
// speaker, which sends nothing.
const restartStopBudget = 5 * time.Second

// restartStop stops for a restart when bgp.graceful_restart is set, and
// reports whether it did: nothing is withdrawn, no Cease is sent, the
// sessions close with the process, so routers keep the routes for the
// restart time while IPVS, which lives in the kernel, keeps forwarding. A
// director that must leave is drained first (directorctl director drain),
// which withdraws at once as always; a host that shuts down withdraws
// gracefully (docs/operations.md).
func (d *daemon) restartStop() bool {
	cfg := d.current()
	restart, why := stopForRestart(cfg, d.speaker != nil, hostShuttingDown)
	if !restart {
		if why != "" {
			d.log.Info("stopping for good: withdrawing gracefully", "reason", why)
		}
		return false
	}
	d.manager.stopping(restartStopBudget)
	d.log.Info("stopping for a restart: routes stay announced (graceful restart)", "reason", why)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if err := d.speaker.Release(ctx); err != nil {
		d.log.Warn("bgp release", "err", err)
	}
	return true
}

// stopForRestart decides whether a SIGTERM is a stop for a restart, and
// says why (or why not, when Graceful Restart is on).
func stopForRestart(cfg *config.Config, haveSpeaker bool, shuttingDown func() bool) (bool, string) {
	if !haveSpeaker || cfg.BGP == nil || cfg.BGP.GracefulRestart == nil {
		return false, ""
	}
	if shuttingDown() {
		// The host is going away: routers that kept its routes would send
		// traffic to it for the restart time, and BFD would not help, since
		// the sessions close before BFD fails.
		return false, "the host is shutting down, so this is no restart"
	}
	return true, fmt.Sprintf("routers keep them up to %s until directord is back; drain first to take the director out",
		cfg.BGP.GracefulRestart.RestartTime)
}

// hostShuttingDown reports whether systemd is shutting the host down
// (`systemctl is-system-running` says "stopping"). Without systemd, or when
// it does not answer within a second, it reports false.
func hostShuttingDown() bool {
	if _, err := os.Stat("/run/systemd/system"); err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	// is-system-running exits non-zero for every state but "running", so
	// only its output counts.
	out, _ := exec.CommandContext(ctx, "systemctl", "is-system-running").Output()
	return strings.TrimSpace(string(out)) == "stopping"
}
