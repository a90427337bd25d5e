package health

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// maxTCPInFlight bounds the engine's open probe sockets. A slot that comes
// while the engine is full is skipped, as one whose previous probe still
// runs is: 16,384 covers 32,000 probes/s that all time out after 500 ms. A
// lower open-files limit lowers it to half that limit (see inFlightLimit),
// so running out of descriptors never passes for a backend failure.
const maxTCPInFlight = 1 << 14

// inFlightLimit is maxTCPInFlight, or half the process's open-files limit
// when that is lower, leaving the other half to everything else.
func inFlightLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur >= 2*maxTCPInFlight {
		return maxTCPInFlight
	}
	return max(int(rl.Cur/2), 16)
}

// tcpEngine runs the Scheduler's built-in tcp probes without a goroutine, a
// timer or a netpoller registration each. One goroutine starts every
// non-blocking connect (openTCP), waits for all of them in its own epoll set
// (itself waited for in Go's netpoller) and expires them at their deadlines. At thousands of probes per second the
// per-probe goroutine hand-offs, deadline timers and poller registrations of
// the worker path cost as much CPU as the connects themselves; here a probe
// costs socket, setsockopt, connect, epoll_ctl, getsockopt and close, and the
// goroutine wakes once for a whole batch of completions.
//
// Everything but in and the wake pipe is owned by the engine goroutine.
type tcpEngine struct {
	s      *Scheduler
	epfd   int
	file   *os.File // epfd in Go's netpoller
	wakeR  int      // read end of the wake pipe, in the epoll set
	wakeW  int
	in     chan []*entry
	limit  int                 // most probes in flight (inFlightLimit)
	probes map[int32]*tcpProbe // in flight, by file descriptor
	list   []*tcpProbe         // the same probes, for deadline scans
	seq    uint32
	events []syscall.EpollEvent
}

// tcpProbe is one connect in flight.
type tcpProbe struct {
	e        *entry
	t        Target
	fd       int
	seq      uint32 // tells a reused descriptor's events apart
	idx      int    // index in tcpEngine.list
	start    time.Time
	deadline time.Time
}

// newTCPEngine creates the engine's epoll set and wake pipe.
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
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN, Fd: int32(p[0])}
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, p[0], &ev); err != nil {
		syscall.Close(epfd)
		syscall.Close(p[0])
		syscall.Close(p[1])
		return nil, fmt.Errorf("epoll_ctl: %w", err)
	}
	return &tcpEngine{s: s, limit: inFlightLimit(), epfd: epfd, file: os.NewFile(uintptr(epfd), "tcp-probes"), wakeR: p[0], wakeW: p[1], in: make(chan []*entry, 64),
		probes: make(map[int32]*tcpProbe), events: make([]syscall.EpollEvent, 256)}, nil
}

// submit hands a batch of dispatched tcp entries to the engine. It returns
// false, leaving the batch to the caller, when ctx ends first.
func (g *tcpEngine) submit(ctx context.Context, batch []*entry) bool {
	select {
	case g.in <- batch:
		g.wake()
		return true
	case <-ctx.Done():
		return false
	}
}

// wake interrupts the engine's epoll_wait. A full pipe already guarantees a
// wake-up, so a failed write is fine.
func (g *tcpEngine) wake() { _, _ = syscall.Write(g.wakeW, []byte{0}) }

// run probes until ctx ends, then closes every socket in flight and
// releases their entries; results of probes cut short by the stop are not
// recorded. The caller wakes it once ctx ends, and calls close after it
// returned.
func (g *tcpEngine) run(ctx context.Context) {
	defer g.abort()
	// The epoll set waits in Go's netpoller like any socket (it is readable
	// while it has events): a goroutine blocked in epoll_wait would hold its
	// thread and keep the runtime's monitor polling every 20 µs.
	rc, err := g.file.SyscallConn()
	if err != nil {
		g.s.log.Error("health tcp probes stopped", "err", err)
		return
	}
	for {
		g.take(ctx)
		if ctx.Err() != nil {
			return
		}
		_ = g.file.SetReadDeadline(g.nextDeadline())
		n := 0
		werr := rc.Read(func(fd uintptr) bool {
			n, _ = syscall.EpollWait(int(fd), g.events, 0)
			return n > 0
		})
		if werr != nil && !errors.Is(werr, os.ErrDeadlineExceeded) {
			g.s.log.Error("health tcp probes stopped", "err", werr)
			return
		}
		now := g.s.now()
		for _, ev := range g.events[:max(n, 0)] {
			if ev.Fd == int32(g.wakeR) {
				g.drainWake()
				continue
			}
			g.complete(ctx, ev, now)
		}
		g.expire(ctx, now)
	}
}

// take starts the probes of every batch waiting in g.in.
func (g *tcpEngine) take(ctx context.Context) {
	for {
		select {
		case batch := <-g.in:
			for _, e := range batch {
				g.start(ctx, e)
			}
		default:
			return
		}
	}
}

// start opens e's connect; one the kernel finishes at once is recorded
// straight away, one in progress joins the epoll set.
func (g *tcpEngine) start(ctx context.Context, e *entry) {
	if ctx.Err() != nil || len(g.list) >= g.limit {
		if ctx.Err() == nil {
			g.s.log.Debug("health probe skipped: too many tcp probes in flight",
				"backend", netip.AddrPortFrom(e.target.Addr, e.target.Port), "in_flight", len(g.list))
		}
		g.s.release([]*entry{e})
		return
	}
	t, ok := g.s.begin(e, nil)
	if !ok {
		return
	}
	start := g.s.now()
	fd, _, done, err := openTCP(t)
	if !done {
		g.seq++
		ev := syscall.EpollEvent{Events: syscall.EPOLLOUT, Fd: int32(fd), Pad: int32(g.seq)}
		if err = syscall.EpollCtl(g.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err == nil {
			p := &tcpProbe{e: e, t: t, fd: fd, seq: g.seq, idx: len(g.list), start: start, deadline: start.Add(e.timeout)}
			g.probes[int32(fd)] = p
			g.list = append(g.list, p)
			return
		}
		syscall.Close(fd)
		err = fmt.Errorf("connect %s: epoll_ctl: %w", netip.AddrPortFrom(t.Addr, t.Port), err)
	}
	g.s.record(ctx, e, t, err, start, g.s.now())
}

// complete records the probe whose socket reported ev.
func (g *tcpEngine) complete(ctx context.Context, ev syscall.EpollEvent, now time.Time) {
	p := g.probes[ev.Fd]
	if p == nil || p.seq != uint32(ev.Pad) {
		return
	}
	var err error
	soerr, gerr := syscall.GetsockoptInt(p.fd, syscall.SOL_SOCKET, syscall.SO_ERROR)
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

// expire fails every probe whose deadline has passed.
func (g *tcpEngine) expire(ctx context.Context, now time.Time) {
	for i := 0; i < len(g.list); {
		p := g.list[i]
		if now.Before(p.deadline) {
			i++
			continue
		}
		err := fmt.Errorf("connect %s: %w after %s", netip.AddrPortFrom(p.t.Addr, p.t.Port), errTimeout, p.e.timeout)
		g.finish(ctx, p, err, now) // moves the last probe to i
	}
}

// finish closes p's socket (a reset once connected), forgets it and records
// its result.
func (g *tcpEngine) finish(ctx context.Context, p *tcpProbe, err error, now time.Time) {
	syscall.Close(p.fd) // also leaves the epoll set
	g.forget(p)
	g.s.record(ctx, p.e, p.t, err, p.start, now)
}

// forget removes p from the in-flight set.
func (g *tcpEngine) forget(p *tcpProbe) {
	delete(g.probes, int32(p.fd))
	last := g.list[len(g.list)-1]
	g.list[p.idx], last.idx = last, p.idx
	g.list = g.list[:len(g.list)-1]
}

// nextDeadline is the earliest deadline in flight, or the zero time (no
// deadline) with nothing in flight.
func (g *tcpEngine) nextDeadline() time.Time {
	var first time.Time
	for _, p := range g.list {
		if first.IsZero() || p.deadline.Before(first) {
			first = p.deadline
		}
	}
	return first
}

// drainWake empties the wake pipe.
func (g *tcpEngine) drainWake() {
	var buf [64]byte
	for {
		if n, err := syscall.Read(g.wakeR, buf[:]); n <= 0 || err != nil {
			return
		}
	}
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

// close releases the entries of batches never started and closes the
// engine's descriptors. It runs once neither run nor submit can run again.
func (g *tcpEngine) close() {
	for len(g.in) > 0 {
		g.s.release(<-g.in)
	}
	g.file.Close() // closes epfd
	syscall.Close(g.wakeR)
	syscall.Close(g.wakeW)
}

// connectError phrases a connect failure the way probeError does.
func connectError(t Target, err error) error {
	return fmt.Errorf("connect %s: %w", netip.AddrPortFrom(t.Addr, t.Port), err)
}
