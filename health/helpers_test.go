package health

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"
)

// closedPort returns a loopback port that had a listener a moment ago and now
// has none, so a connect to it is refused.
func closedPort(t *testing.T, network string) uint16 {
	t.Helper()
	var ap netip.AddrPort
	switch network {
	case "tcp":
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ap = ln.Addr().(*net.TCPAddr).AddrPort()
		ln.Close()
	default:
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ap = pc.LocalAddr().(*net.UDPAddr).AddrPort()
		pc.Close()
	}
	return ap.Port()
}

// loopback is 127.0.0.1.
var loopback = netip.MustParseAddr("127.0.0.1")

// addrPort returns the loopback port of a listener's address.
func addrPort(t *testing.T, a net.Addr) uint16 {
	t.Helper()
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		t.Fatal(err)
	}
	return ap.Port()
}

// runCheck calls c for t under t.Spec.Timeout, as the scheduler would, and
// returns the error text ("" for success) and how long it took.
func runCheck(t *testing.T, c Checker, tg Target) (string, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), tg.Spec.Timeout)
	defer cancel()
	start := time.Now()
	err := c.Check(ctx, tg)
	if err == nil {
		return "", time.Since(start)
	}
	return err.Error(), time.Since(start)
}

// fullListener returns a TCP port on 127.0.0.1 whose listener never accepts and
// whose accept queue is full, so the kernel drops new SYNs and a connect times
// out. This is the "listener that never answers" case on loopback.
func fullListener(t *testing.T) uint16 {
	t.Helper()
	port, _ := stalledListener(t)
	return port
}

// stalledListener returns a TCP port on 127.0.0.1 whose accept queue is
// full, so the kernel drops SYNs and a connect stays in progress, and free,
// which accepts the queued connections: a connect still retrying then
// completes at its next SYN retransmission (about 1 s after it began).
func stalledListener(t *testing.T) (port uint16, free func()) {
	t.Helper()
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port = uint16(sa.(*syscall.SockaddrInet4).Port)
	free = func() {
		if err := syscall.SetNonblock(fd, true); err != nil {
			t.Fatal(err)
		}
		for {
			nfd, _, err := syscall.Accept4(fd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
			if err != nil {
				return
			}
			t.Cleanup(func() { syscall.Close(nfd) })
		}
	}
	addr := netip.AddrPortFrom(loopback, port).String()
	// Backlog 0 still queues one connection; fill the queue until a connect
	// stalls (bounded: a handful of attempts).
	for range 8 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			if !strings.Contains(err.Error(), "timeout") {
				t.Fatalf("filling accept queue: %v", err)
			}
			return port, free
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Fatal("accept queue never filled; cannot build a connect timeout on loopback")
	return 0, nil
}

// silentListener accepts TCP connections on 127.0.0.1 and never writes, until
// the test ends.
func silentListener(t *testing.T) uint16 {
	t.Helper()
	var conns []net.Conn
	return acceptLoop(t, "127.0.0.1:0", func(c net.Conn) { conns = append(conns, c) }, func() {
		for _, c := range conns {
			c.Close()
		}
	})
}

// closingListener accepts TCP connections on 127.0.0.1 and closes each at
// once, until the test ends.
func closingListener(t *testing.T) uint16 {
	t.Helper()
	return acceptLoop(t, "127.0.0.1:0", func(c net.Conn) { c.Close() }, func() {})
}

// acceptLoop listens on addr, hands every accepted connection to handle and,
// when the test ends, stops and calls done (on the accepting goroutine). It
// returns the port.
func acceptLoop(t *testing.T, addr string, handle func(net.Conn), done func()) uint16 {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	stopped := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-stopped })
	go func() {
		defer close(stopped)
		defer done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			handle(c)
		}
	}()
	return addrPort(t, ln.Addr())
}

// mustAddr parses an IP address in tests.
func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }
