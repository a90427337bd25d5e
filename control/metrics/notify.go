package metrics

import "github.com/prometheus/client_golang/prometheus"

// NotificationStats is one notification channel's delivery record, as the
// daemon's notifier keeps it (notify.Stats).
type NotificationStats struct {
	// Channel names the destination ("webhook URL", "email TO via SERVER",
	// "exec COMMAND").
	Channel string
	// Sent counts messages delivered; Failed messages given up on after
	// the channel's attempts ran out.
	Sent, Failed int
	// Attempts counts every try; Retries the tries after a failure.
	Attempts, Retries int
	// Failing is true while the last attempt failed.
	Failing bool
}

// notifyCollector exports whether notifications reach their receivers: a
// channel that keeps failing is an operator who is not told.
type notifyCollector struct {
	stats func() []NotificationStats

	sent, failed, attempts, retries, failing *prometheus.Desc
}

func newNotifyCollector(stats func() []NotificationStats) *notifyCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"channel"}, nil)
	}
	return &notifyCollector{
		stats:    stats,
		sent:     d("directord_notifications_sent_total", "Notification messages delivered, by channel."),
		failed:   d("directord_notifications_failed_total", "Notification messages given up on after the channel's max_attempts, by channel (the log says why)."),
		attempts: d("directord_notification_attempts_total", "Delivery attempts, by channel."),
		retries:  d("directord_notification_retries_total", "Delivery attempts after a failed one, by channel."),
		failing:  d("directord_notification_failing", "1 while a channel's last delivery attempt failed (it keeps retrying with backoff)."),
	}
}

// Describe sends every descriptor.
func (c *notifyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sent, c.failed, c.attempts, c.retries, c.failing} {
		ch <- d
	}
}

// Collect emits every channel's counts.
func (c *notifyCollector) Collect(ch chan<- prometheus.Metric) {
	if c.stats == nil {
		return
	}
	e := emitter{ch}
	for _, s := range c.stats() {
		e.counter(c.sent, uint64(s.Sent), s.Channel)
		e.counter(c.failed, uint64(s.Failed), s.Channel)
		e.counter(c.attempts, uint64(s.Attempts), s.Channel)
		e.counter(c.retries, uint64(s.Retries), s.Channel)
		e.gauge(c.failing, b2f(s.Failing), s.Channel)
	}
}
