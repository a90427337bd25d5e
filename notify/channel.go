package notify

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/anycast-director/director/config"
)

// maxBackoff caps the doubling retry delay.
const maxBackoff = time.Minute

// sender delivers one message over one channel. A permanentError means a
// retry cannot help (a 4xx answer, a 5xx SMTP reply).
type sender interface {
	send(ctx context.Context, m Message) error
	// name identifies the channel in logs ("webhook https://...").
	name() string
}

// permanentError marks a failure that a retry cannot fix.
type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Stats count one channel's deliveries.
type Stats struct {
	// Sent counts messages delivered; Failed messages given up on.
	Sent, Failed int
	// Attempts counts every try, Retries the tries after a failure.
	Attempts, Retries int
	// LastError is the last failed attempt's error ("" after a success).
	LastError string
}

// channel is one destination: it holds a pending digest, spends tokens of
// its bucket and delivers on its own goroutine.
type channel struct {
	s        sender
	delivery config.Delivery
	director string
	log      *slog.Logger

	mu      sync.Mutex
	pending *builder
	bucket  bucket
	stats   Stats

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

func newChannel(s sender, d config.Delivery, n config.Notify, director string, log *slog.Logger, now time.Time) *channel {
	return &channel{s: s, delivery: d, director: director, log: log.With("channel", s.name()),
		pending: newBuilder(), bucket: newBucket(n.Burst, n.Every, now), wake: make(chan struct{}, 1)}
}

// offer adds a grouped batch to what the channel will send next.
func (c *channel) offer(b *builder) {
	f := b.filtered(c.delivery.Events)
	if f.empty() {
		return
	}
	c.mu.Lock()
	c.pending.mergeMessage(f.message(c.director))
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// take removes and returns what is pending.
func (c *channel) take() *builder {
	c.mu.Lock()
	defer c.mu.Unlock()
	b := c.pending
	c.pending = newBuilder()
	return b
}

// start runs the channel until stop.
func (c *channel) start(ctx context.Context) {
	ctx, c.cancel = context.WithCancel(ctx)
	c.done = make(chan struct{})
	go func() {
		defer close(c.done)
		c.run(ctx)
	}()
}

// stop ends the channel and waits for it; a message being sent is abandoned.
func (c *channel) stop() {
	c.cancel()
	<-c.done
}

// run waits for pending changes, for a token, and delivers.
func (c *channel) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.wake:
		}
		if !c.waitToken(ctx) {
			return
		}
		// Everything that arrived while waiting for the token goes in.
		if b := c.take(); !b.empty() {
			c.deliver(ctx, b)
		}
	}
}

// waitToken spends one token, waiting for it if the bucket is empty. While it
// waits, offers keep merging into the pending digest.
func (c *channel) waitToken(ctx context.Context) bool {
	for {
		c.mu.Lock()
		wait := c.bucket.take(time.Now())
		c.mu.Unlock()
		if wait == 0 {
			return true
		}
		c.log.Debug("notification rate limit reached; holding changes for a digest", "reason", "next in "+wait.Round(time.Second).String())
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// deliver sends b, retrying with a doubling backoff. Each retry also carries
// what happened meanwhile, so a receiver that comes back gets one message
// with everything.
func (c *channel) deliver(ctx context.Context, b *builder) {
	backoff := c.delivery.Backoff
	for attempt := 1; ; attempt++ {
		m := b.message(c.director)
		err := c.attempt(ctx, m, attempt)
		if err == nil {
			return
		}
		var perm permanentError
		if errors.As(err, &perm) || attempt >= c.delivery.MaxAttempts || ctx.Err() != nil {
			c.record(func(s *Stats) { s.Failed++ })
			c.log.Error("notification dropped", "err", err, "attempts", attempt, "reason", m.Summary)
			return
		}
		c.log.Warn("notification failed; retrying", "err", err, "attempt", attempt, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
		b.mergeMessage(c.take().message(c.director))
		c.record(func(s *Stats) { s.Retries++ })
	}
}

// attempt is one bounded try.
func (c *channel) attempt(ctx context.Context, m Message, n int) error {
	actx, cancel := context.WithTimeout(ctx, c.delivery.Timeout)
	defer cancel()
	err := c.s.send(actx, m)
	c.record(func(s *Stats) {
		s.Attempts++
		if err != nil {
			s.LastError = err.Error()
			return
		}
		s.Sent++
		s.LastError = ""
	})
	if err == nil {
		c.log.Info("notification sent", "reason", m.Summary, "attempt", n)
	}
	return err
}

func (c *channel) record(f func(*Stats)) {
	c.mu.Lock()
	f(&c.stats)
	c.mu.Unlock()
}

func (c *channel) snapshot() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stats
}

// bucket is a token bucket: burst tokens, one more every period.
type bucket struct {
	tokens float64
	burst  float64
	every  time.Duration
	last   time.Time
}

func newBucket(burst int, every time.Duration, now time.Time) bucket {
	return bucket{tokens: float64(burst), burst: float64(burst), every: every, last: now}
}

// take spends a token and returns 0, or returns how long until one is there.
func (b *bucket) take(now time.Time) time.Duration {
	if b.every > 0 && now.After(b.last) {
		b.tokens = min(b.burst, b.tokens+float64(now.Sub(b.last))/float64(b.every))
	}
	b.last = now
	// A refill computed in floating point can land a hair below a whole
	// token, with a wait that rounds to 0: that counts as a token.
	if b.tokens >= 1-1e-9 {
		b.tokens = max(0, b.tokens-1)
		return 0
	}
	return max(time.Millisecond, time.Duration((1-b.tokens)*float64(b.every)))
}
