package health

import (
	"container/heap"
	"context"
	"math"
	"net/netip"
	"time"

	"github.com/anycast-director/director/health/check"
)

// entry is one deduplicated target inside the Scheduler. Every field is guarded
// by Scheduler.mu.
type entry struct {
	key string
	// addr, port, path and spec are the Target probed. spec is shared by
	// the entries whose checks are identical (a service's backends; Update
	// interns it) and never modified: a copy in every entry was 300 bytes
	// per target.
	addr     netip.Addr
	port     uint16
	path     Path
	spec     *check.Spec
	interval time.Duration
	timeout  time.Duration

	// next is the scheduled start of the next probe; index is the entry's place
	// in the queue (-1 when it is not queued, that is after removal).
	next  time.Time
	index int
	// spreadAt is when the first start was chosen; dispatched turns true with
	// the first probe. Run uses them to re-anchor starts chosen before it ran.
	spreadAt   time.Time
	dispatched bool
	// cadence, when set, is the slot the probes after a learning first probe
	// keep (spreadLocked): the first probe comes early, the rest on the
	// cadence spread over the interval. Zero once taken.
	cadence time.Time
	// credit thins an overloaded scheduler's slots: each slot adds
	// 1/stretch, and a slot is probed when it reaches 1. It starts at a
	// random value, so targets skip different slots.
	credit float64
	// parked is how many slots skipAhead moved next past, at parkStretch,
	// and parkCredit the credit before it did: a lower stretch brings e
	// back (unpark).
	parked                  int
	parkCredit, parkStretch float64

	// running is set while a probe is dispatched or in flight, so probes of one
	// target never overlap; cancel aborts that probe when the target is removed.
	running bool
	cancel  context.CancelFunc
	removed bool

	damp   Dampener
	result Result
	// reason caches the dampener's last reason (see reasonAfter).
	reason cachedReason
}

// cachedReason is a dampener reason and what it was formatted from.
type cachedReason struct {
	damp Dampener
	ok   bool
	prev State
	text string
}

// reasonAfter is the dampener's reason after a probe whose result was ok
// and which found the state prev. It is formatted only when its inputs
// changed: every probe of a healthy backend has the same reason, and
// formatting it each time was garbage to collect at every probe.
func (e *entry) reasonAfter(ok bool, prev State) string {
	c := cachedReason{damp: e.damp, ok: ok, prev: prev, text: e.reason.text}
	if c != e.reason || c.text == "" {
		c.text = e.damp.reason(ok, prev)
		e.reason = c
	}
	return c.text
}

// queue orders entries by next start: the Scheduler's single timer source,
// one timer for all targets instead of one per target. Each heap slot carries
// its start as a number, so the comparisons that dominate a large heap do not
// chase entry pointers.
type queue struct {
	base  time.Time // starts are kept as offsets from base
	items heapItems
}

// item is a heap slot: an entry and its start as an offset from queue.base.
type item struct {
	at time.Duration
	e  *entry
}

// heapItems implements container/heap; entries track their index.
type heapItems []item

func (h heapItems) Len() int           { return len(h) }
func (h heapItems) Less(i, j int) bool { return h[i].at < h[j].at }
func (h heapItems) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].e.index = i
	h[j].e.index = j
}

// Push appends x (an item); used through container/heap.
func (h *heapItems) Push(x any) {
	it := x.(item)
	it.e.index = len(*h)
	*h = append(*h, it)
}

// Pop removes the last item; used through container/heap.
func (h *heapItems) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = item{}
	it.e.index = -1
	*h = old[:len(old)-1]
	return it
}

// len returns the number of queued entries.
func (q *queue) len() int { return len(q.items) }

// head returns the entry that starts first; the queue must not be empty.
func (q *queue) head() *entry { return q.items[0].e }

// push queues e at e.next.
func (q *queue) push(e *entry) { heap.Push(&q.items, item{at: e.next.Sub(q.base), e: e}) }

// moved restores order after e.next changed.
func (q *queue) moved(e *entry) {
	q.items[e.index].at = e.next.Sub(q.base)
	heap.Fix(&q.items, e.index)
}

// remove takes e out of the queue if it is queued.
func (q *queue) remove(e *entry) {
	if e.index >= 0 {
		heap.Remove(&q.items, e.index)
	}
}

// each calls f for every queued entry, then restores order, for bulk changes
// of next starts.
func (q *queue) each(f func(*entry)) {
	for i := range q.items {
		f(q.items[i].e)
		q.items[i].at = q.items[i].e.next.Sub(q.base)
	}
	heap.Init(&q.items)
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

// skipAhead moves e past the slots an overloaded scheduler would skip
// before e's next probe at this stretch: each adds 1/stretch to e.credit
// and the first to reach 1 is probed, so the queue holds e at that slot
// instead of popping and requeueing it at every skipped one (at a stretch of
// 4, three heap moves in four did nothing). The slots keep e's place in its
// interval. A higher stretch takes effect for e at that slot; a lower one
// brings it back at once (unpark).
func (e *entry) skipAhead(stretch float64) {
	e.parked = 0
	skip := math.Ceil((1-e.credit)*stretch) - 1
	if skip < 1 || math.IsInf(skip, 0) || math.IsNaN(skip) {
		return
	}
	e.parked, e.parkCredit, e.parkStretch = int(skip), e.credit, stretch
	e.next = e.next.Add(time.Duration(skip) * e.interval)
	e.credit += skip / stretch
}

// unpark moves e, parked by skipAhead at a higher stretch, to the slot
// stretch would probe: the slots it skipped that are still to come are
// judged again at stretch, those already past stay skipped at the stretch
// they were skipped at.
// Without this a lower stretch raised the probe rate only after up to
// stretch intervals, while the load meter judged windows that did not yet
// show it, and relaxed further.
func (e *entry) unpark(now time.Time, stretch float64) {
	if e.parked == 0 {
		return
	}
	first := e.next.Add(-time.Duration(e.parked) * e.interval)
	passed := 0
	if !first.After(now) {
		passed = min(int(now.Sub(first)/e.interval)+1, e.parked)
	}
	e.next = first.Add(time.Duration(passed) * e.interval)
	e.credit = e.parkCredit + float64(passed)/e.parkStretch
	e.skipAhead(stretch)
}

// target is the Target e probes.
func (e *entry) target() Target {
	return Target{Addr: e.addr, Port: e.port, Spec: *e.spec, Path: e.path}
}

// specs interns the check specs of the targets an Update adds: targets with
// identical specs share one copy, deep-copied from the caller's so a caller
// reusing its slices after Update cannot race with probes.
type specs struct {
	byEncoding map[string]*check.Spec
	buf        []byte
}

// intern returns the shared copy of s.
func (in *specs) intern(s *check.Spec) *check.Spec {
	in.buf = s.AppendTiming(s.AppendProbe(in.buf[:0])) // every field of a Spec
	if p, ok := in.byEncoding[string(in.buf)]; ok {
		return p
	}
	if in.byEncoding == nil {
		in.byEncoding = make(map[string]*check.Spec)
	}
	p := new(check.Spec)
	*p = s.Clone()
	in.byEncoding[string(in.buf)] = p
	return p
}
