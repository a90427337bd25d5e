package notify

import (
	"context"
	"fmt"
	"log/slog"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
)

// queueSize bounds the events waiting to be grouped; beyond it they are
// counted as lost and the next message says so.
const queueSize = 4096

// Notifier groups submitted events and hands the groups to its channels.
// Run owns the grouping and the channels; Submit and Update may be called
// from any goroutine and never block.
type Notifier struct {
	director string
	log      *slog.Logger

	in      chan Event
	updates chan config.Notify
	lost    atomic.Int64

	mu       sync.Mutex
	channels map[string]*channel // by configuration identity, owned by Run
	cfg      config.Notify
	ready    chan struct{}
	// testSender is an extra channel that tests install before Run.
	testSender *builtSender
}

// New builds a notifier for director; Run starts it. The channels are built
// from cfg at once, so a bad CA file fails here.
func New(cfg config.Notify, director string, log *slog.Logger) (*Notifier, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	n := &Notifier{director: director, log: log.With("component", "notify"), in: make(chan Event, queueSize),
		updates: make(chan config.Notify, 1), cfg: cfg, ready: make(chan struct{})}
	if _, err := n.senders(cfg); err != nil {
		return nil, err
	}
	return n, nil
}

// Submit queues an event; it never blocks. When the queue is full the event
// is counted as lost.
func (n *Notifier) Submit(e Event) {
	select {
	case n.in <- e:
	default:
		n.lost.Add(1)
	}
}

// Lose records events that were lost before they reached Submit.
func (n *Notifier) Lose(count int) { n.lost.Add(int64(count)) }

// Update replaces the configuration: channels whose settings did not change
// keep their pending changes and their rate limit; the others are rebuilt.
// A configuration whose channels cannot be built is refused and the running
// one stays.
func (n *Notifier) Update(cfg config.Notify) error {
	if _, err := n.senders(cfg); err != nil {
		return err
	}
	select {
	case <-n.updates:
	default:
	}
	n.updates <- cfg
	return nil
}

// Stats returns each channel's delivery counts by channel name.
func (n *Notifier) Stats() map[string]Stats {
	n.mu.Lock()
	defer n.mu.Unlock()
	out := make(map[string]Stats, len(n.channels))
	for _, c := range n.channels {
		out[c.s.name()] = c.snapshot()
	}
	return out
}

// Ready is closed once Run has started its channels.
func (n *Notifier) Ready() <-chan struct{} { return n.ready }

// Run groups events and feeds the channels until ctx ends.
func (n *Notifier) Run(ctx context.Context) error {
	n.apply(ctx, n.cfg)
	close(n.ready)
	defer n.stopAll()
	batch := newBuilder()
	var flush <-chan time.Time
	var timer *time.Timer
	for {
		select {
		case <-ctx.Done():
			if timer != nil {
				timer.Stop()
			}
			return nil
		case cfg := <-n.updates:
			n.apply(ctx, cfg)
		case e := <-n.in:
			batch.add(e)
			if flush == nil {
				timer = time.NewTimer(n.currentWindow())
				flush = timer.C
			}
		case <-flush:
			flush = nil
			batch.lost += int(n.lost.Swap(0))
			n.offer(batch)
			batch = newBuilder()
		}
	}
}

func (n *Notifier) currentWindow() time.Duration {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.cfg.GroupWindow
}

// offer hands a grouped batch to every channel.
func (n *Notifier) offer(b *builder) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.channels {
		c.offer(b)
	}
}

// apply starts and stops channels so they match cfg.
func (n *Notifier) apply(ctx context.Context, cfg config.Notify) {
	built, err := n.senders(cfg)
	if err != nil { // checked by New and Update; a file may have gone since
		n.log.Error("notification channels unchanged", "err", err)
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	n.cfg = cfg
	next := make(map[string]*channel, len(built))
	for id, b := range built {
		if c, ok := n.channels[id]; ok {
			next[id] = c
			delete(n.channels, id)
			continue
		}
		c := newChannel(b.s, b.d, cfg, n.director, n.log, time.Now())
		c.start(ctx)
		next[id] = c
	}
	for _, c := range n.channels {
		c.stop()
	}
	n.channels = next
}

func (n *Notifier) stopAll() {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, c := range n.channels {
		c.stop()
	}
	n.channels = nil
}

// builtSender is a channel's sender and delivery settings.
type builtSender struct {
	s sender
	d config.Delivery
}

// senders builds a sender per configured channel, keyed by everything that
// defines it (the rate limit included), so an unchanged channel keeps its
// identity across updates.
func (n *Notifier) senders(cfg config.Notify) (map[string]builtSender, error) {
	out := map[string]builtSender{}
	rate := fmt.Sprintf("rate %d/%s", cfg.Burst, cfg.Every)
	for i, w := range cfg.Webhooks {
		s, err := newWebhook(w)
		if err != nil {
			return nil, fmt.Errorf("notify.webhooks[%d]: %w", i, err)
		}
		out[fmt.Sprintf("%s %d %#v", rate, i, w)] = builtSender{s, w.Delivery}
	}
	for i, e := range cfg.Email {
		s, err := newEmail(e)
		if err != nil {
			return nil, fmt.Errorf("notify.email[%d]: %w", i, err)
		}
		out[fmt.Sprintf("%s %d %#v", rate, i, e)] = builtSender{s, e.Delivery}
	}
	for i, x := range cfg.Exec {
		out[fmt.Sprintf("%s %d %#v", rate, i, x)] = builtSender{newExec(x, n.director), x.Delivery}
	}
	if n.testSender != nil {
		out[rate+" test"] = *n.testSender
	}
	return out, nil
}

// Follow feeds n with the changes appended to log from now on, until ctx
// ends. It runs on its own goroutine: appending to the log never waits for
// it, and if it falls more than the log's size behind, the missed events
// are counted as lost.
func Follow(ctx context.Context, log *announcer.EventLog, director func() string, n *Notifier) {
	_, last, _, changed := log.Since(math.MaxUint64)
	for {
		select {
		case <-ctx.Done():
			return
		case <-changed:
		}
		var events []announcer.Event
		var lost bool
		prev := last
		events, last, lost, changed = log.Since(last)
		if lost && len(events) > 0 {
			n.Lose(int(events[0].Seq - prev - 1))
		}
		name := director()
		for _, e := range events {
			if ne, ok := FromAnnouncer(name, e); ok {
				n.Submit(ne)
			}
		}
	}
}
