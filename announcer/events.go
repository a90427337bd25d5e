package announcer

import (
	"context"
	"sync"
	"time"
)

// EventKind classifies an Event.
type EventKind string

// The event kinds a Watch stream carries.
const (
	EventHealth   EventKind = "health"   // a backend's verdict changed
	EventVIP      EventKind = "vip"      // a VIP was advertised or withdrawn
	EventPeer     EventKind = "peer"     // a routing session changed state
	EventReload   EventKind = "reload"   // a configuration was loaded, rejected or rolled back
	EventOverride EventKind = "override" // an operator override was set or cleared
	EventDirector EventKind = "director" // director-wide changes (drain, shutdown, failures)
)

// Event is one change, numbered so a watcher can resume after a disconnect.
type Event struct {
	// Seq is the event's position; it grows by one per event from 1.
	Seq uint64
	// Time is when it happened.
	Time time.Time
	// Kind classifies it.
	Kind EventKind
	// Subject is what changed ("198.18.0.10", "web/10.0.2.21:80", "10.0.1.1").
	Subject string
	// From and To are the old and new states.
	From, To string
	// Reason explains the change.
	Reason string
	// Who is the operator behind an override, reload or rollback ("" for
	// changes the director made by itself).
	Who string
}

// EventLog keeps the most recent events in a ring so watchers can resume from a
// sequence number. It is safe for concurrent use.
type EventLog struct {
	mu     sync.Mutex
	ring   []Event
	next   uint64 // sequence of the next event
	notify chan struct{}
}

// NewEventLog keeps up to size events.
func NewEventLog(size int) *EventLog {
	if size < 1 {
		size = 1
	}
	return &EventLog{ring: make([]Event, 0, size), next: 1, notify: make(chan struct{})}
}

// Append records e (its Seq is assigned) and wakes waiters.
func (l *EventLog) Append(e Event) Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	e.Seq = l.next
	l.next++
	if len(l.ring) < cap(l.ring) {
		l.ring = append(l.ring, e)
	} else {
		l.ring[int(e.Seq-1)%cap(l.ring)] = e
	}
	close(l.notify)
	l.notify = make(chan struct{})
	return e
}

// Since returns the events with Seq > after, the sequence to resume from, and
// whether events were lost because the ring overwrote them. The returned
// channel closes when a newer event arrives.
func (l *EventLog) Since(after uint64) (events []Event, last uint64, lost bool, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	last = l.next - 1
	if after > last {
		after = last
	}
	oldest := l.next - uint64(len(l.ring))
	if after+1 < oldest {
		lost = true
		after = oldest - 1
	}
	for seq := after + 1; seq <= last; seq++ {
		events = append(events, l.ring[int(seq-1)%cap(l.ring)])
	}
	return events, last, lost, l.notify
}

// whoKey carries the operator of a reload or rollback in a context.
type whoKey struct{}

// WithWho returns ctx carrying who: the operator a Reload or Rollback with
// this context is recorded for in the event log (the API layer sets it from
// the caller's identity).
func WithWho(ctx context.Context, who string) context.Context {
	return context.WithValue(ctx, whoKey{}, who)
}

// whoFrom returns the operator WithWho put in ctx, or "".
func whoFrom(ctx context.Context) string {
	s, _ := ctx.Value(whoKey{}).(string)
	return s
}

// reasonKey carries the operator's reason for a reload or rollback.
type reasonKey struct{}

// WithReason returns ctx carrying the operator's reason for a Reload or
// Rollback, recorded after the event's own reason.
func WithReason(ctx context.Context, reason string) context.Context {
	return context.WithValue(ctx, reasonKey{}, reason)
}

// withOperatorReason appends the operator's reason from ctx to why.
func withOperatorReason(ctx context.Context, why string) string {
	if r, _ := ctx.Value(reasonKey{}).(string); r != "" {
		return why + ": " + r
	}
	return why
}
