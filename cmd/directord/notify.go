package main

import (
	"context"
	"fmt"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control/metrics"
	"github.com/anycast-director/director/notify"
)

// newNotifier builds the notifier of the notify section (one with no
// channels when the section is absent, so a reload can add some).
func (d *daemon) newNotifier(cfg *config.Config) error {
	n, err := notify.New(cfg.Notify, cfg.Director.Name, d.log)
	if err != nil {
		return fmt.Errorf("notify: %w", err)
	}
	d.notifier = n
	return nil
}

// runNotifier groups and delivers notifications, fed from the event log by
// its own goroutine: the announcer loop only appends to the log and never
// waits for a channel.
func (d *daemon) runNotifier(ctx context.Context) error {
	go notify.Follow(ctx, d.loop.Events(), d.notifierFollowsConfig(), d.notifier)
	return d.notifier.Run(ctx)
}

// notifierFollowsConfig returns the director name for Follow, applying the
// notify section of the running configuration when it changed: every
// reload and rollback appends an event, so the follower sees it. A channel
// that cannot be built (an unreadable CA file) keeps the running channels.
func (d *daemon) notifierFollowsConfig() func() string {
	seen := d.first
	return func() string {
		c := d.current()
		if c != seen {
			seen = c
			if err := d.notifier.Update(c.Notify); err != nil {
				d.log.Error("notification channels unchanged", "err", err)
			}
		}
		return c.Director.Name
	}
}

// notificationStats is the notifier's delivery record for the metrics
// (none before the notifier is built).
func (d *daemon) notificationStats() []metrics.NotificationStats {
	if d.notifier == nil {
		return nil
	}
	var out []metrics.NotificationStats
	for name, s := range d.notifier.Stats() {
		out = append(out, metrics.NotificationStats{Channel: name, Sent: s.Sent, Failed: s.Failed,
			Attempts: s.Attempts, Retries: s.Retries, Failing: s.LastError != ""})
	}
	return out
}
