// Package connlimit caps how many connections a listener keeps open, so that
// a listener anyone can reach (the metrics port, the API's TCP port) cannot
// take the descriptors that health probes, the API socket and the routing
// sessions need. A connection accepted beyond the cap is closed at once: the
// flood costs one descriptor for a moment, never more than the cap.
package connlimit

import (
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Bounds of DefaultMax.
const (
	minMax = 8
	maxMax = 256
)

// DefaultMax is the cap for one reachable listener: a sixteenth of the
// process's open-files limit, between 8 and 256. The health engine keeps to
// half the limit, and the two capped listeners (metrics, API over TCP) to an
// eighth together, so three eighths stay for everything else: BGP sessions,
// netlink, HTTP and exec checks, the API socket and files. (Go raises the
// soft limit to one below the hard one when the process starts.)
func DefaultMax() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return minMax
	}
	return int(min(max(rl.Cur/16, minMax), maxMax))
}

// logEvery bounds how often a listener at its cap logs.
const logEvery = time.Minute

// Listener is a net.Listener that holds at most Max connections open.
type Listener struct {
	net.Listener
	name  string
	log   *slog.Logger
	slots chan struct{}

	rejected atomic.Uint64
	mu       sync.Mutex
	lastLog  time.Time
	logged   uint64 // rejected at the last log line
}

// New caps l at limit open connections (at least 1); name and log say which
// listener refused connections, at most once a minute.
func New(l net.Listener, limit int, name string, log *slog.Logger) *Listener {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Listener{Listener: l, name: name, log: log, slots: make(chan struct{}, max(limit, 1))}
}

// Accept returns the next connection while fewer than the cap are open;
// connections beyond it are closed as they arrive.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		select {
		case l.slots <- struct{}{}:
			return &conn{Conn: c, release: sync.OnceFunc(func() { <-l.slots })}, nil
		default:
			l.reject()
			c.Close()
		}
	}
}

// Max is the cap.
func (l *Listener) Max() int { return cap(l.slots) }

// Open is the number of connections open now.
func (l *Listener) Open() int { return len(l.slots) }

// Rejected is the number of connections closed at the cap so far.
func (l *Listener) Rejected() uint64 { return l.rejected.Load() }

// reject counts a refused connection and logs, at most once a minute, how
// many were refused since the last line.
func (l *Listener) reject() {
	n := l.rejected.Add(1)
	l.mu.Lock()
	defer l.mu.Unlock()
	if now := time.Now(); now.Sub(l.lastLog) >= logEvery {
		l.log.Warn("connection limit reached: refusing connections", "listener", l.name,
			"limit", cap(l.slots), "refused", n-l.logged,
			"reason", "a client holds many connections open; probes and the API socket are not affected")
		l.lastLog, l.logged = now, n
	}
}

// conn frees its slot when closed (once, however often Close is called).
type conn struct {
	net.Conn
	release func()
}

// Close closes the connection and frees its slot.
func (c *conn) Close() error {
	err := c.Conn.Close()
	c.release()
	return err
}
