package health

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync/atomic"
	"time"

	"github.com/anycast-director/director/health/check"
)

// Checker runs one probe against a target. The Scheduler calls it on a
// goroutine of the probe's own with a context whose deadline is the target's
// Spec.Timeout, counted from the probe's start; a Checker must return
// promptly once that context is done, or a stuck probe would hold its slot
// in flight and delay shutdown. A nil error means the target passed.
type Checker interface {
	Check(ctx context.Context, t Target) error
}

// CheckerFunc lets a plain function act as a Checker, mainly so tests and callers
// can inject fakes without declaring a type.
type CheckerFunc func(ctx context.Context, t Target) error

// Check calls f.
func (f CheckerFunc) Check(ctx context.Context, t Target) error { return f(ctx, t) }

// DefaultCheckers returns a fresh map with the built-in checker for every Type.
// The Scheduler uses it for any Type that Options.Checkers does not override.
// The exec checker holds a cgroup once it ran a probe: a caller using it
// directly closes it (it is an io.Closer) when done; the Scheduler does.
func DefaultCheckers() map[check.Type]Checker {
	h := newHTTPChecker()
	return map[check.Type]Checker{
		check.TCP:   tcpChecker{},
		check.HTTP:  h,
		check.HTTPS: h,
		check.UDP:   CheckerFunc(checkUDP),
		check.DNS:   CheckerFunc(checkDNS),
		check.Exec:  newExecChecker(nil),
	}
}

// probeContext bounds ctx by t.Spec.Timeout when the caller did not set a
// deadline, so a checker called directly still cannot run forever.
func probeContext(ctx context.Context, t Target) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok || t.Spec.Timeout <= 0 {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, t.Spec.Timeout)
}

// errTimeout marks probe errors caused by the probe deadline, so the scheduler
// and tests can tell a timeout from a refusal with errors.Is.
var errTimeout = errors.New("timeout")

// sendClockKey is the context key of a probe's *sendClock.
type sendClockKey struct{}

// sendClock tells whether a probe left the director in time: by is the
// latest time it may be sent and still give the backend (nearly) its whole
// timeout, on the clock now.
type sendClock struct {
	by   time.Time
	now  func() time.Time
	late atomic.Bool
}

// withSendClock returns ctx carrying a sendClock for its probe, with the
// clock that reports whether the probe was sent late.
func withSendClock(ctx context.Context, by time.Time, now func() time.Time) (context.Context, *sendClock) {
	sc := &sendClock{by: by, now: now}
	return context.WithValue(ctx, sendClockKey{}, sc), sc
}

// markSend notes that ctx's probe sends its first packet (a SYN, a
// request, a datagram) now; a send after the sendClock's by marks the probe
// late. A checker called without a sendClock (directly, not by the
// Scheduler) notes nothing.
func markSend(ctx context.Context) {
	if sc, ok := ctx.Value(sendClockKey{}).(*sendClock); ok && sc.now().After(sc.by) {
		sc.late.Store(true)
	}
}

// timeoutError formats a deadline failure the way operators read it:
// "timeout after 500ms". When the Spec has no Timeout the remaining text is
// just "timeout".
func timeoutError(t Target) error {
	if t.Spec.Timeout > 0 {
		return fmt.Errorf("%w after %s", errTimeout, t.Spec.Timeout)
	}
	return errTimeout
}

// probeError turns a network error from op ("connect", "read", ...) against ap into
// a short status line such as "connect 10.0.2.21:80: connection refused". Deadline
// and cancellation errors become "timeout after 500ms" and "canceled"; syscall
// errors keep their errno wrapped so errors.Is(err, syscall.ECONNREFUSED) works.
func probeError(ctx context.Context, op string, ap netip.AddrPort, t Target, err error) error {
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded),
		errors.Is(err, context.DeadlineExceeded),
		errors.Is(err, os.ErrDeadlineExceeded):
		return fmt.Errorf("%s %s: %w", op, ap, timeoutError(t))
	case ctx.Err() != nil:
		return fmt.Errorf("%s %s: %w", op, ap, ctx.Err())
	}
	return fmt.Errorf("%s %s: %w", op, ap, rootCause(err))
}

// rootCause strips the net and os wrappers ("dial tcp 1.2.3.4:80: connect: ",
// "fork/exec /bin/x: ") whose text would repeat what the caller already says.
func rootCause(err error) error {
	for {
		var opErr *net.OpError
		var sysErr *os.SyscallError
		var pathErr *os.PathError
		switch {
		case errors.As(err, &opErr) && opErr.Err != nil:
			err = opErr.Err
		case errors.As(err, &sysErr) && sysErr.Err != nil:
			err = sysErr.Err
		case errors.As(err, &pathErr) && pathErr.Err != nil:
			err = pathErr.Err
		default:
			return err
		}
	}
}

// dial opens a fresh connection to t for network "tcp" or "udp", bound to
// t.Spec.Source when set. Every probe dials anew: a pooled connection would keep
// reporting a listener healthy after it died.
func dial(ctx context.Context, network string, t Target) (net.Conn, error) {
	ap := netip.AddrPortFrom(t.Addr, t.Port)
	// A probe lives for one exchange: TCP keepalive would only cost setsockopt
	// calls (measurable at thousands of probes per second).
	d := net.Dialer{KeepAlive: -1}
	if t.Spec.Source.IsValid() {
		src := netip.AddrPortFrom(t.Spec.Source, 0)
		if network == "tcp" {
			d.LocalAddr = net.TCPAddrFromAddrPort(src)
		} else {
			d.LocalAddr = net.UDPAddrFromAddrPort(src)
		}
	}
	markSend(ctx)
	// The context carries the deadline; no Dialer.Timeout so there is one clock.
	c, err := d.DialContext(ctx, network, ap.String())
	var sysErr *os.SyscallError
	if errors.As(err, &sysErr) && sysErr.Syscall == "bind" {
		return nil, fmt.Errorf("bind source address %s for %s: %w; is it configured on this host?", t.Spec.Source, ap, sysErr.Err)
	}
	if err != nil {
		return nil, probeError(ctx, "connect", ap, t, err)
	}
	return c, nil
}

// watchConn applies ctx to an open connection: its deadline becomes the I/O
// deadline and cancellation unblocks any read or write at once. The returned
// stop must be called before the connection is closed.
func watchConn(ctx context.Context, c net.Conn) (stop func() bool) {
	if d, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(d)
	}
	return context.AfterFunc(ctx, func() { _ = c.SetDeadline(time.Unix(1, 0)) })
}
