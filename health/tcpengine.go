package health

import (
	"container/heap"
	"context"
	"fmt"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/anycast-director/director/health/check"
)

// maxSocketsInFlight bounds the open sockets of probes in flight, the tcp
// engine's and the other probes' together. A slot that comes while they are
// at the limit is skipped (SkipLimit), as one whose previous probe still
// runs is: 16,384 covers 32,000 probes/s that all time out after 500 ms. A
// lower open-files limit lowers it to half that limit (see inFlightLimit),
// so running out of descriptors never passes for a backend failure.
const maxSocketsInFlight = 1 << 14

// inFlightLimit is maxSocketsInFlight, or half the process's open-files
// limit when that is lower, leaving the other half to everything else.
func inFlightLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur >= 2*maxSocketsInFlight {
		return maxSocketsInFlight
	}
	return max(int(rl.Cur/2), 16)
}

// tcpEngine runs the Scheduler's built-in tcp probes without a goroutine, a
// timer or a netpoller registration each, and dispatches every probe: its
// goroutine is the Scheduler's dispatcher. One goroutine takes the due
// entries from the timer heap, starts every non-blocking connect (openTCP)
// and launches the other types' probes on goroutines of their own, waits for
// its connects in its own epoll set (itself waited for in Go's netpoller),
// until the next start or the earliest probe deadline, and expires probes
// at their deadlines. At thousands of probes per second the per-probe
// goroutine hand-offs, deadline timers and poller registrations of the
// goroutine path cost as much CPU as the connects themselves; here a probe
// costs socket, setsockopt, connect, epoll_ctl, getsockopt and close, and
// the goroutine wakes once for a whole batch of starts and completions. A
// dispatcher of its own handing each batch to the engine woke two
// goroutines, often on two threads, every coalescing cell: under emulation
// those thread switches cost more than the probes.
//
// A busy engine never fails a probe for its own lateness: a probe's timeout
// starts when its connect starts, every completion already reported is
// harvested before any deadline is judged, and a probe past its deadline is
// asked its real state first (a connect that completed meanwhile passes).
//
// Everything but the wake-up is owned by the engine goroutine.
type tcpEngine struct {
	s      *Scheduler
	epfd   int
	file   *os.File // epfd in Go's netpoller
	wakeR  int      // read end of the wake pipe, in the epoll set
	wakeW  int
	timer  int                 // timerfd in the epoll set: the end of the engine's wait
	probes map[int32]*tcpProbe // in flight, by file descriptor
	list   deadlines           // the same probes, earliest deadline first
	seq    uint32
	events []syscall.EpollEvent

	// wakeMu orders wake-ups (from any goroutine: Update, ctx's end) before
	// close, so no byte is written to a closed, perhaps reused, descriptor.
	wakeMu sync.RWMutex
	closed bool
}

// tcpProbe is one connect in flight.
type tcpProbe struct {
	e        *entry
	t        Target
	fd       int
	dst      rawSockaddr
	seq      uint32 // tells a reused descriptor's events apart
	idx      int    // index in tcpEngine.list (a heap)
	start    time.Time
	deadline time.Time
}

// newTCPEngine creates the engine's epoll set with its wake pipe and timer
// in it.
func newTCPEngine(s *Scheduler) (*tcpEngine, error) {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	if err := syscall.SetNonblock(epfd, true); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("epoll set non-blocking: %w", err)
	}
	var p [2]int
	if err := syscall.Pipe2(p[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		syscall.Close(epfd)
		return nil, fmt.Errorf("pipe2: %w", err)
	}
	tfd, err := newTimerFD()
	if err != nil {
		closeAll(epfd, p[0], p[1])
		return nil, err
	}
	for _, fd := range []int{p[0], tfd} {
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(fd)}
		if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
			closeAll(epfd, p[0], p[1], tfd)
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	return &tcpEngine{s: s, epfd: epfd, file: os.NewFile(uintptr(epfd), "tcp-probes"), wakeR: p[0], wakeW: p[1],
		timer: tfd, probes: make(map[int32]*tcpProbe), events: make([]syscall.EpollEvent, 256)}, nil
}

// closeAll closes descriptors.
func closeAll(fds ...int) {
	for _, fd := range fds {
		syscall.Close(fd)
	}
}

// wake interrupts the engine's epoll_wait. A full pipe already guarantees a
// wake-up, so a failed write is fine.
func (g *tcpEngine) wake() {
	g.wakeMu.RLock()
	defer g.wakeMu.RUnlock()
	if !g.closed {
		rawWrite(g.wakeW, []byte{0})
	}
}

// run dispatches and probes until ctx ends (it wakes the engine), then
// closes every socket in flight and releases their entries; results of
// probes cut short by the stop are not recorded. Probes of other types are
// launched on goroutines counted in wg. It returns an error when the engine
// cannot wait any more (the caller falls back to dispatching without it);
// the caller calls close after it returned.
func (g *tcpEngine) run(ctx context.Context, wg *sync.WaitGroup) error {
	defer g.abort()
	stop := context.AfterFunc(ctx, g.wake)
	defer stop()
	// The epoll set waits in Go's netpoller like any socket (it is readable
	// while it has events): a goroutine blocked in epoll_wait would hold its
	// thread and keep the runtime's monitor polling every 20 µs.
	rc, err := g.file.SyscallConn()
	if err != nil {
		return err
	}
	for {
		wait := g.dispatch(ctx, wg)
		if ctx.Err() != nil {
			return nil
		}
		// The wait ends through the timerfd, not a read deadline: changing a
		// deadline moves a runtime timer, and a timer moved earlier wakes
		// another thread to watch it (netpollBreak or wakep), once per
		// cell; under emulation that thread traffic cost more than probes.
		if err := g.arm(g.waitUntil(wait)); err != nil {
			return err
		}
		n := 0
		werr := rc.Read(func(fd uintptr) bool {
			n, _ = rawEpollPoll(int(fd), g.events)
			return n > 0
		})
		if werr != nil {
			return werr
		}
		g.harvest(ctx, n)
		g.expire(ctx, g.s.now())
	}
}

// dispatch starts every due probe: tcp ones here, others on goroutines of
// their own (Scheduler.launch). Between batches it harvests completions and
// ends the probes past their deadline, so a long backlog holds neither
// finished probes unread nor dead ones open: a dispatcher always behind
// (10,000 targets under emulation) judged no timeout for 30-45 s, and the
// targets of a dead real server, their probes still open, skipped their
// slots as busy meanwhile. It returns the time
// until the next start, at most until the load window ends (the load is
// judged here).
func (g *tcpEngine) dispatch(ctx context.Context, wg *sync.WaitGroup) time.Duration {
	for {
		due, wait := g.s.takeDue()
		judgeIn := g.s.meter.judge(g.s.now())
		if ctx.Err() != nil {
			g.s.release(due)
			return 0
		}
		for _, e := range due {
			if runsInEngine(e) {
				g.start(ctx, e)
			} else {
				g.s.launch(ctx, wg, e)
			}
		}
		if len(due) == 0 {
			if wait < 0 || wait > judgeIn {
				wait = judgeIn
			}
			return wait
		}
		if len(g.list) > 0 {
			n, _ := rawEpollPoll(g.epfd, g.events)
			g.harvest(ctx, n)
			g.expire(ctx, g.s.now())
		}
	}
}

// waitUntil is when the engine's wait ends: at the next start (wait from
// now) or the earliest probe deadline, whichever comes first.
func (g *tcpEngine) waitUntil(wait time.Duration) time.Time {
	at := g.s.now().Add(wait)
	if d := g.nextDeadline(); !d.IsZero() && d.Before(at) {
		return d
	}
	return at
}

// runsInEngine says whether e's probe runs in the tcp engine: a built-in
// tcp check without a forwarding path.
func runsInEngine(e *entry) bool { return e.spec.Type == check.TCP && !e.path.VIP.IsValid() }

// harvest records the completions in the first n events, then every other
// completion the kernel already has, so no finished probe waits unread
// while deadlines are judged.
func (g *tcpEngine) harvest(ctx context.Context, n int) {
	for n > 0 {
		now := g.s.now()
		for _, ev := range g.events[:n] {
			if ev.Fd == int32(g.wakeR) || ev.Fd == int32(g.timer) {
				drain(int(ev.Fd))
				continue
			}
			g.complete(ctx, ev, now)
		}
		if n < len(g.events) {
			return
		}
		var err error
		if n, err = rawEpollPoll(g.epfd, g.events); err != nil {
			return
		}
	}
}

// start opens e's connect; one the kernel finishes at once is recorded
// straight away, one in progress joins the epoll set.
func (g *tcpEngine) start(ctx context.Context, e *entry) {
	if ctx.Err() != nil {
		g.s.release([]*entry{e})
		return
	}
	if !g.s.sockets.tryAcquire() {
		g.s.skipLimit(e)
		return
	}
	t, ok := g.s.begin(e, nil)
	if !ok {
		g.s.sockets.release()
		return
	}
	g.s.meter.started.Add(1)
	start := g.s.now()
	fd, dst, done, err := openTCP(t)
	if !done {
		g.seq++
		ev := syscall.EpollEvent{Events: syscall.EPOLLOUT, Fd: int32(fd), Pad: int32(g.seq)}
		if err = rawEpollAdd(g.epfd, fd, &ev); err == nil {
			p := &tcpProbe{e: e, t: t, fd: fd, dst: dst, seq: g.seq, start: start, deadline: start.Add(e.timeout)}
			g.probes[int32(fd)] = p
			heap.Push(&g.list, p)
			g.s.meter.inFlight.Add(1)
			return
		}
		rawClose(fd)
		err = fmt.Errorf("connect %s: epoll_ctl: %w", netip.AddrPortFrom(t.Addr, t.Port), err)
	}
	g.s.sockets.release()
	g.s.record(ctx, e, t, err, start, g.s.now())
}

// complete records the probe whose socket reported ev.
func (g *tcpEngine) complete(ctx context.Context, ev syscall.EpollEvent, now time.Time) {
	p := g.probes[ev.Fd]
	if p == nil || p.seq != uint32(ev.Pad) {
		return
	}
	var err error
	soerr, gerr := rawSocketError(p.fd)
	switch {
	case gerr != nil:
		err = connectError(p.t, gerr)
	case soerr != 0:
		err = connectError(p.t, syscall.Errno(soerr))
	case ev.Events&syscall.EPOLLOUT == 0:
		err = connectError(p.t, syscall.ECONNABORTED)
	}
	g.finish(ctx, p, err, now)
}

// expire ends every probe whose deadline has passed. Each is asked its
// state first: one whose connect completed (or failed) after its deadline
// was judged by the engine's own lateness, not the backend's, so it ends
// with its real outcome; only a connect still in progress times out. The
// probes in flight are a heap by deadline, so a loop turn looks only at
// the expired ones: a scan of every probe in flight on each turn was
// thousands of comparisons per turn at 10,000 targets.
func (g *tcpEngine) expire(ctx context.Context, now time.Time) {
	for len(g.list) > 0 && !now.Before(g.list[0].deadline) {
		p := g.list[0]
		g.finish(ctx, p, g.stateAtExpiry(p), now)
	}
}

// stateAtExpiry asks a probe's socket how its connect ended: nil when it is
// connected, the failure when it failed, a timeout while it is in progress.
func (g *tcpEngine) stateAtExpiry(p *tcpProbe) error {
	switch err := rawConnect(p.fd, &p.dst); err {
	case nil, syscall.EISCONN:
		return nil
	case syscall.EALREADY, syscall.EINPROGRESS:
		return fmt.Errorf("connect %s: %w after %s", netip.AddrPortFrom(p.t.Addr, p.t.Port), errTimeout, p.e.timeout)
	default:
		return connectError(p.t, err)
	}
}

// finish closes p's socket (a reset once connected), forgets it and records
// its result.
func (g *tcpEngine) finish(ctx context.Context, p *tcpProbe, err error, now time.Time) {
	rawClose(p.fd) // also leaves the epoll set
	g.forget(p)
	g.s.record(ctx, p.e, p.t, err, p.start, now)
}

// forget removes p from the in-flight set and returns its socket to the
// budget.
func (g *tcpEngine) forget(p *tcpProbe) {
	g.s.sockets.release()
	g.s.meter.inFlight.Add(-1)
	delete(g.probes, int32(p.fd))
	heap.Remove(&g.list, p.idx)
}

// nextDeadline is the earliest deadline in flight, or the zero time (no
// deadline) with nothing in flight.
func (g *tcpEngine) nextDeadline() time.Time {
	if len(g.list) == 0 {
		return time.Time{}
	}
	return g.list[0].deadline
}

// deadlines is a min-heap of probes by deadline (container/heap); each
// probe tracks its index.
type deadlines []*tcpProbe

func (h deadlines) Len() int           { return len(h) }
func (h deadlines) Less(i, j int) bool { return h[i].deadline.Before(h[j].deadline) }
func (h deadlines) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].idx, h[j].idx = i, j
}

// Push appends x (a *tcpProbe); used through container/heap.
func (h *deadlines) Push(x any) {
	p := x.(*tcpProbe)
	p.idx = len(*h)
	*h = append(*h, p)
}

// Pop removes the last probe; used through container/heap.
func (h *deadlines) Pop() any {
	old := *h
	p := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	return p
}

// drain empties the wake pipe or reads the timer's expiry count.
func drain(fd int) {
	var buf [64]byte
	for {
		if n, err := rawRead(fd, buf[:]); n <= 0 || err != nil {
			return
		}
	}
}

// arm sets the timer to expire at at (at once when at has passed).
func (g *tcpEngine) arm(at time.Time) error {
	if err := setTimerFD(g.timer, max(at.Sub(g.s.now()), time.Nanosecond)); err != nil {
		return fmt.Errorf("timerfd_settime: %w", err)
	}
	return nil
}

// abort ends every probe in flight unrecorded.
func (g *tcpEngine) abort() {
	for len(g.list) > 0 {
		p := g.list[len(g.list)-1]
		syscall.Close(p.fd)
		g.forget(p)
		g.s.release([]*entry{p.e})
	}
}

// close closes the engine's descriptors. It runs once run has returned.
func (g *tcpEngine) close() {
	g.wakeMu.Lock()
	defer g.wakeMu.Unlock()
	g.closed = true
	g.file.Close() // closes epfd
	closeAll(g.wakeR, g.wakeW, g.timer)
}

// connectError phrases a connect failure the way probeError does.
func connectError(t Target, err error) error {
	return fmt.Errorf("connect %s: %w", netip.AddrPortFrom(t.Addr, t.Port), err)
}
