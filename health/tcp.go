package health

import (
	"context"
	"net"
)

// checkTCP passes when a TCP connection to the target completes. It closes the
// connection with a reset (SO_LINGER 0), as HAProxy does for its checks, so a
// director probing thousands of targets does not pile up TIME_WAIT sockets and
// run out of source ports.
func checkTCP(ctx context.Context, t Target) error {
	ctx, cancel := probeContext(ctx, t)
	defer cancel()
	return connectTCP(ctx, t)
}

// tcpChecker is the built-in tcp Checker. The Scheduler recognises it and
// runs its probes in a tcpEngine instead of calling Check.
type tcpChecker struct{}

// Check runs checkTCP.
func (tcpChecker) Check(ctx context.Context, t Target) error { return checkTCP(ctx, t) }

// closeReset closes c without lingering in TIME_WAIT when it is a TCP connection.
func closeReset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
}
