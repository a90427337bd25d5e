package main

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/internal/sdnotify"
)

// manager is the daemon's side of the service manager protocol: READY=1
// after the first reconcile pass, RELOADING=1 and READY=1 around a SIGHUP
// reload, STOPPING=1 at the start of a graceful shutdown, and the watchdog,
// fed only while the announcer loop is not wedged. Outside systemd every
// method does nothing.
type manager struct {
	n   *sdnotify.Notifier
	log *slog.Logger

	firstPass chan struct{} // closed when the loop finished its first pass
	once      sync.Once
}

// newManager reads $NOTIFY_SOCKET; a malformed one is logged and ignored.
func newManager(log *slog.Logger) *manager {
	n, err := sdnotify.FromEnv()
	if err != nil {
		log.Warn("ignoring the service manager's notify socket", "err", err)
	}
	return &manager{n: n, log: log, firstPass: make(chan struct{})}
}

// passDone is called after every reconcile pass.
func (m *manager) passDone() { m.once.Do(func() { close(m.firstPass) }) }

// notify sends a message and logs a failure (systemd restarted, socket gone).
func (m *manager) notify(assignments ...string) {
	if err := m.n.Notify(assignments...); err != nil {
		m.log.Warn("notifying the service manager failed", "err", err)
	}
}

// readyAfterFirstPass sends READY=1 once the loop has reconciled for the
// first time, so `systemctl start` returns when the kernel is programmed.
func (m *manager) readyAfterFirstPass(ctx context.Context, status func() *announcer.Status) {
	select {
	case <-m.firstPass:
	case <-ctx.Done():
		return
	}
	m.notify(sdnotify.Ready, sdnotify.Status(summary(status())))
}

// reloading and reloaded bracket a SIGHUP reload.
func (m *manager) reloading() { m.notify(sdnotify.Reloading()) }

// reloaded ends it: v is the configuration that runs now (the new one, or
// the old one after a rejected reload).
func (m *manager) reloaded(status *announcer.Status, v announcer.ConfigVersion, err error) {
	st := *status
	st.Config = v // the published status may not show the new version yet
	text := summary(&st)
	if err != nil {
		text = "reload rejected, the running configuration stays; " + text
	}
	m.notify(sdnotify.Ready, sdnotify.Status(text))
}

// stopping announces a graceful shutdown that may take up to budget, so
// systemd's TimeoutStopSec does not cut a long graceful_shutdown + linger
// short.
func (m *manager) stopping(budget time.Duration) {
	m.notify(sdnotify.Stopping, sdnotify.ExtendTimeout(budget),
		sdnotify.Status(fmt.Sprintf("withdrawing VIPs gracefully and stopping (at most %s)", budget)))
}

// feedWatchdog feeds systemd's watchdog at half its interval while wedged
// reports false, until ctx ends. A wedged loop stops the feeding, so systemd
// restarts the daemon after WatchdogSec (the loop's own watchdog has
// withdrawn every VIP by then).
func (m *manager) feedWatchdog(ctx context.Context, wedged func() bool) {
	interval, err := sdnotify.WatchdogInterval()
	if err != nil {
		m.log.Warn("ignoring the service manager's watchdog setting", "err", err)
	}
	if interval <= 0 || m.n == nil {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	starved := false
	for {
		if w := wedged(); w != starved {
			starved = w
			if w {
				m.log.Error("announcer loop wedged: no longer feeding the systemd watchdog, which restarts directord",
					"reason", fmt.Sprintf("WatchdogSec %s", interval))
			} else {
				m.log.Info("announcer loop recovered: feeding the systemd watchdog again")
			}
		}
		if !starved {
			m.notify(sdnotify.Watchdog)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// summary is the STATUS= line: the configuration and what is advertised.
func summary(st *announcer.Status) string {
	if st == nil {
		return "starting"
	}
	advertised := 0
	for _, v := range st.VIPs {
		if v.Advertised {
			advertised++
		}
	}
	return fmt.Sprintf("config version %d (%s), %d of %d VIPs advertised", st.Config.Version, st.Config.Digest, advertised, len(st.VIPs))
}
