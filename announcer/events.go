package announcer

import (
	"context"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"
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
	EventRepair   EventKind = "repair"   // kernel state changed behind the daemon's back was restored
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
	ring   []Event // grows to size as events come, then wraps
	next   uint64  // sequence of the next event
	notify chan struct{}
	size   int // the ring's capacity, fixed at construction
}

// NewEventLog keeps up to size events. The ring grows as events come: a
// director with few services never holds the memory of a full one (4,096
// events are half a MiB).
func NewEventLog(size int) *EventLog {
	if size < 1 {
		size = 1
	}
	return &EventLog{next: 1, notify: make(chan struct{}), size: size}
}

// maxEventText bounds each text field of an event. The ring keeps 4,096
// events and a Watch client with gRPC's default 4 MiB limit must be able to
// receive any of them: a reload rejected with tens of thousands of errors
// used to make one event of 11 MB. (config.Errors already prints only the
// first 20 errors; this is the bound for any other text.)
const maxEventText = 16 << 10

// Append records e (its Seq is assigned; texts longer than maxEventText are
// cut) and wakes waiters.
func (l *EventLog) Append(e Event) Event {
	e.Subject, e.From, e.To, e.Reason, e.Who = clipText(e.Subject), clipText(e.From), clipText(e.To), clipText(e.Reason), clipText(e.Who)
	l.mu.Lock()
	defer l.mu.Unlock()
	e.Seq = l.next
	l.next++
	if len(l.ring) < l.size {
		l.ring = append(l.ring, e)
	} else {
		l.ring[int(e.Seq-1)%l.size] = e
	}
	close(l.notify)
	l.notify = make(chan struct{})
	return e
}

// Since returns the events with Seq > after, the sequence to resume from, and
// whether events were lost because the ring overwrote them. The returned
// channel closes when a newer event arrives.
func (l *EventLog) Since(after uint64) (events []Event, last uint64, lost bool, changed <-chan struct{}) {
	return l.SinceAtMost(after, l.size)
}

// SinceAtMost is Since in pages: at most n events with Seq > after (the
// oldest first), the newest sequence issued so far (the caller has caught up
// once its last event has it), whether events were lost, and the channel
// that closes when a newer event arrives. A Watch stream that does not read
// holds one page instead of a copy of the whole log.
func (l *EventLog) SinceAtMost(after uint64, n int) (events []Event, newest uint64, lost bool, changed <-chan struct{}) {
	l.mu.Lock()
	defer l.mu.Unlock()
	newest = l.next - 1
	if after > newest {
		after = newest
	}
	oldest := l.next - uint64(len(l.ring))
	if after+1 < oldest {
		lost = true
		after = oldest - 1
	}
	end := min(newest, after+uint64(max(n, 0)))
	for seq := after + 1; seq <= end; seq++ {
		events = append(events, l.ring[int(seq-1)%l.size])
	}
	return events, newest, lost, l.notify
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

// clipText cuts s to maxEventText bytes at a character boundary, saying how
// much was cut.
func clipText(s string) string {
	if len(s) <= maxEventText {
		return s
	}
	cut := maxEventText
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + fmt.Sprintf("... (%d more bytes)", len(s)-cut)
}
