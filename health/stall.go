package health

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// stallTick is how often the stall watch looks at the clock.
	stallTick = 10 * time.Millisecond
	// stallAfter is how far past its tick the stall watch must run for
	// the director to count as stalled: its goroutines, the netpoller
	// among them, did not run (a full run queue, or the process not
	// scheduled on a busy host).
	stallAfter = 20 * time.Millisecond
)

// stallWatch notices the director's own stalls: a goroutine that should
// run every stallTick and did not run for stallAfter more. A probe timeout
// during such a stall says nothing about the backend: the kernel may have
// held its answer (a completed handshake, a response) while the Go runtime
// ran the probe's deadline timer before its netpoller reported the answer,
// which made healthy backends on loopback time out while the director fell
// behind (BenchmarkSchedulerHTTP at twice the rate the host could do).
type stallWatch struct {
	last atomic.Int64 // the clock at the last tick seen, Unix ns; 0 when not watching

	mu     sync.Mutex
	stalls [16]stall // the latest stalls, a ring
	next   int
}

// stall is one interval in which the director did not run, Unix ns.
type stall struct{ from, to int64 }

// run watches the clock now until ctx is done.
func (w *stallWatch) run(ctx context.Context, now func() time.Time) {
	tick := time.NewTicker(stallTick)
	defer tick.Stop()
	w.last.Store(now().UnixNano())
	defer w.last.Store(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		t := now().UnixNano()
		if prev := w.last.Swap(t); time.Duration(t-prev) > stallTick+stallAfter {
			w.mu.Lock()
			w.stalls[w.next%len(w.stalls)] = stall{from: prev, to: t}
			w.next++
			w.mu.Unlock()
		}
	}
}

// stalledDuring reports whether the director stalled between from and to,
// or has been stalled since before now (the watch did not run lately).
func (w *stallWatch) stalledDuring(from, to, now time.Time) bool {
	last := w.last.Load()
	if last == 0 {
		return false
	}
	if time.Duration(now.UnixNano()-last) > stallTick+stallAfter {
		return true
	}
	f, t := from.UnixNano(), to.UnixNano()
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, st := range w.stalls {
		if st.to > f && st.from < t {
			return true
		}
	}
	return false
}
