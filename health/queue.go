package health

import (
	"context"
	"slices"
	"time"
)

// entry is one deduplicated target inside the Scheduler. Every field is guarded
// by Scheduler.mu.
type entry struct {
	key      string
	target   Target
	interval time.Duration
	timeout  time.Duration

	// next is the scheduled start of the next probe; index is the entry's place
	// in the queue (-1 when it is not queued, that is after removal).
	next  time.Time
	index int

	// running is set while a probe is dispatched or in flight, so probes of one
	// target never overlap; cancel aborts that probe when the target is removed.
	running bool
	cancel  context.CancelFunc
	removed bool

	damp   Dampener
	result Result
}

// queue is a min-heap of entries ordered by next start, the Scheduler's single
// timer source: one timer for all targets instead of one per target.
type queue []*entry

func (q queue) Len() int           { return len(q) }
func (q queue) Less(i, j int) bool { return q[i].next.Before(q[j].next) }
func (q queue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index = i
	q[j].index = j
}

// Push adds x (an *entry); used through container/heap.
func (q *queue) Push(x any) {
	e := x.(*entry)
	e.index = len(*q)
	*q = append(*q, e)
}

// Pop removes the last element; used through container/heap.
func (q *queue) Pop() any {
	old := *q
	e := old[len(old)-1]
	old[len(old)-1] = nil
	e.index = -1
	*q = old[:len(old)-1]
	return e
}

// nextSlot returns the first start in the cadence scheduled, scheduled+interval,
// ... that is after now. Keeping starts on that grid (instead of "now +
// interval") stops a target's phase from drifting, so the spread chosen at
// Update survives slow probes and a late dispatcher; skipping missed slots
// instead of catching up avoids bursts.
func nextSlot(scheduled, now time.Time, interval time.Duration) time.Time {
	next := scheduled.Add(interval)
	if !next.After(now) {
		missed := now.Sub(scheduled) / interval
		next = scheduled.Add((missed + 1) * interval)
	}
	return next
}

// cloneTarget deep-copies the slices of t, so a caller reusing its slices after
// Update cannot race with probes.
func cloneTarget(t Target) Target {
	t.Spec.ExpectStatus = slices.Clone(t.Spec.ExpectStatus)
	t.Spec.Command = slices.Clone(t.Spec.Command)
	return t
}
