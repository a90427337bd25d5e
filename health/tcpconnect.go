package health

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// connectTCP opens and resets a TCP connection to t: the whole tcp check when
// it is called directly. The Scheduler runs its tcp probes through tcpEngine
// instead, which starts them with openTCP as well.
//
// A director checking thousands of backends spends most of its CPU here, so
// this path makes only the system calls a check needs: socket, (bind),
// connect, and close with SO_LINGER 0 (a reset, no TIME_WAIT). net.Dialer adds
// option and address queries and a poller registration to every dial (about
// a quarter more CPU per check, measured on loopback). A connect that the
// kernel completes at once (loopback, a local segment) never touches the
// poller; one still in progress waits in Go's netpoller through an *os.File,
// so a slow backend does not hold a thread.
func connectTCP(ctx context.Context, t Target) error {
	fd, dst, done, err := openTCP(t)
	if done {
		return err
	}
	f := os.NewFile(uintptr(fd), "tcp-check")
	defer f.Close()
	return waitConnect(ctx, f, &dst, netip.AddrPortFrom(t.Addr, t.Port), t)
}

// openTCP starts a non-blocking connect to t with SO_LINGER 0 set, so closing
// the socket resets the connection. When done is false the handshake is in
// progress: fd becomes writable when it ends, and the caller owns and closes
// it, and dst is the address it connects to (a connect on fd with it asks
// how the handshake went). When done is true the outcome is already known
// and the socket closed: err is nil (connected, then reset) or the failure
// phrased for the operator. Nothing here allocates unless the probe fails:
// at hundreds of probes a second, each allocation is garbage to collect.
func openTCP(t Target) (fd int, dst rawSockaddr, done bool, err error) {
	ap := netip.AddrPortFrom(t.Addr, t.Port)
	dst = newRawSockaddr(ap, zoneIndex(t.Addr))
	fd, err = rawSocket(dst.family())
	if err != nil {
		return -1, dst, true, fmt.Errorf("connect %s: socket: %w", ap, err)
	}
	rawLingerZero(fd)
	if t.Spec.Source.IsValid() {
		_, src := sockaddr(netip.AddrPortFrom(t.Spec.Source, 0))
		if err := syscall.Bind(fd, src); err != nil {
			rawClose(fd)
			return -1, dst, true, fmt.Errorf("bind source address %s for %s: %w; is it configured on this host?", t.Spec.Source, ap, err)
		}
	}
	err = rawConnect(fd, &dst)
	if err == syscall.EINPROGRESS {
		// A second connect reports the outcome without waiting: EISCONN when
		// the handshake is already done, EALREADY while it is not.
		err = rawConnect(fd, &dst)
	}
	if err == syscall.EALREADY || err == syscall.EINPROGRESS {
		return fd, dst, false, nil
	}
	rawClose(fd)
	if err == nil || err == syscall.EISCONN {
		return -1, dst, true, nil
	}
	return -1, dst, true, connectError(t, err)
}

// waitConnect waits in the netpoller until the connect on f completes, the
// probe deadline passes or ctx is cancelled.
func waitConnect(ctx context.Context, f *os.File, dst *rawSockaddr, ap netip.AddrPort, t Target) error {
	if d, ok := ctx.Deadline(); ok {
		_ = f.SetWriteDeadline(d)
	}
	stop := context.AfterFunc(ctx, func() { _ = f.SetWriteDeadline(time.Unix(1, 0)) })
	defer stop()
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("connect %s: %w", ap, err)
	}
	var result error
	werr := rc.Write(func(fd uintptr) bool {
		switch err := rawConnect(int(fd), dst); err {
		case syscall.EALREADY, syscall.EINPROGRESS:
			return false // not yet: wait for writability
		case nil, syscall.EISCONN:
			result = nil
		default:
			result = err
		}
		return true
	})
	if werr != nil {
		return probeError(ctx, "connect", ap, t, werr)
	}
	if result != nil {
		return probeError(ctx, "connect", ap, t, result)
	}
	return nil
}

// zoneIndex is the interface index of a's IPv6 zone, 0 without a zone
// (every IPv4 address). It is looked up at each probe, so an interface
// created again under its name is found.
func zoneIndex(a netip.Addr) uint32 {
	if z := a.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			return uint32(ifi.Index)
		}
	}
	return 0
}

// sockaddr converts ap for the syscall package.
func sockaddr(ap netip.AddrPort) (int, syscall.Sockaddr) {
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		return syscall.AF_INET, &syscall.SockaddrInet4{Addr: a.Unmap().As4(), Port: int(ap.Port())}
	}
	sa := &syscall.SockaddrInet6{Addr: a.As16(), Port: int(ap.Port())}
	if z := a.Zone(); z != "" {
		if ifi, err := net.InterfaceByName(z); err == nil {
			sa.ZoneId = uint32(ifi.Index)
		}
	}
	return syscall.AF_INET6, sa
}
