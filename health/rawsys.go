package health

import (
	"fmt"
	"net/netip"
	"syscall"
	"time"
	"unsafe"
)

// The tcp engine's system calls are raw (syscall.RawSyscall): none of them
// blocks (the socket is non-blocking; connect, setsockopt, epoll_ctl,
// getsockopt and close return at once), and the runtime's bookkeeping around
// an ordinary syscall costs more than the call. Worse, a call that takes
// longer than 20 µs (a connect whose handshake the kernel completes inside
// the call, on a slow or emulated CPU) lets the runtime's monitor hand the
// processor to another thread, which it must wake: measured in the VM under
// emulation, that thread traffic and the monitor's polling were a third of
// the daemon's CPU per probe.

// rawSocket opens a non-blocking, close-on-exec TCP socket of family.
func rawSocket(family int) (int, error) {
	fd, _, e := syscall.RawSyscall(syscall.SYS_SOCKET, uintptr(family),
		syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if e != 0 {
		return -1, e
	}
	return int(fd), nil
}

// rawLingerZero sets SO_LINGER 0, so close resets the connection.
func rawLingerZero(fd int) {
	l := syscall.Linger{Onoff: 1}
	syscall.RawSyscall6(syscall.SYS_SETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_LINGER,
		uintptr(unsafe.Pointer(&l)), unsafe.Sizeof(l), 0)
}

// rawSockaddr is a socket address in the kernel's layout.
type rawSockaddr struct {
	buf [syscall.SizeofSockaddrInet6]byte
	len uintptr
}

// newRawSockaddr lays out ap for connect; zone is the IPv6 scope id. It is
// a value, so a probe's address lives on its stack or in its tcpProbe, not
// on the heap.
func newRawSockaddr(ap netip.AddrPort, zone uint32) rawSockaddr {
	var r rawSockaddr
	a := ap.Addr()
	if a.Is4() || a.Is4In6() {
		sa := (*syscall.RawSockaddrInet4)(unsafe.Pointer(&r.buf[0]))
		sa.Family = syscall.AF_INET
		sa.Addr = a.Unmap().As4()
		putPort(&sa.Port, ap.Port())
		r.len = syscall.SizeofSockaddrInet4
		return r
	}
	sa := (*syscall.RawSockaddrInet6)(unsafe.Pointer(&r.buf[0]))
	sa.Family = syscall.AF_INET6
	sa.Addr = a.As16()
	sa.Scope_id = zone
	putPort(&sa.Port, ap.Port())
	r.len = syscall.SizeofSockaddrInet6
	return r
}

// family is the address family of r.
func (r *rawSockaddr) family() int {
	if r.len == syscall.SizeofSockaddrInet4 {
		return syscall.AF_INET
	}
	return syscall.AF_INET6
}

// putPort stores port in network byte order.
func putPort(p *uint16, port uint16) {
	b := (*[2]byte)(unsafe.Pointer(p))
	b[0], b[1] = byte(port>>8), byte(port)
}

// rawConnect calls connect on fd.
func rawConnect(fd int, sa *rawSockaddr) error {
	_, _, e := syscall.RawSyscall(syscall.SYS_CONNECT, uintptr(fd), uintptr(unsafe.Pointer(&sa.buf[0])), sa.len)
	if e != 0 {
		return e
	}
	return nil
}

// rawClose closes fd.
func rawClose(fd int) {
	syscall.RawSyscall(syscall.SYS_CLOSE, uintptr(fd), 0, 0)
}

// rawEpollAdd adds fd to the epoll set epfd with ev.
func rawEpollAdd(epfd, fd int, ev *syscall.EpollEvent) error {
	_, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, uintptr(epfd), syscall.EPOLL_CTL_ADD, uintptr(fd),
		uintptr(unsafe.Pointer(ev)), 0, 0)
	if e != 0 {
		return e
	}
	return nil
}

// rawSocketError reads and clears SO_ERROR.
func rawSocketError(fd int) (int, error) {
	var v int32
	l := uint32(unsafe.Sizeof(v))
	_, _, e := syscall.RawSyscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, syscall.SO_ERROR,
		uintptr(unsafe.Pointer(&v)), uintptr(unsafe.Pointer(&l)), 0)
	if e != 0 {
		return 0, e
	}
	return int(v), nil
}

// rawEpollPoll collects ready events from epfd without waiting.
func rawEpollPoll(epfd int, events []syscall.EpollEvent) (int, error) {
	n, _, e := syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])),
		uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// rawWrite writes b to fd (the engine's non-blocking wake pipe).
func rawWrite(fd int, b []byte) {
	syscall.RawSyscall(syscall.SYS_WRITE, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
}

// rawRead reads into b from fd (the engine's non-blocking wake pipe).
func rawRead(fd int, b []byte) (int, error) {
	n, _, e := syscall.RawSyscall(syscall.SYS_READ, uintptr(fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)))
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// newTimerFD creates a non-blocking, close-on-exec timerfd on the monotonic
// clock.
func newTimerFD() (int, error) {
	fd, _, e := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, 1, // CLOCK_MONOTONIC
		syscall.O_NONBLOCK|syscall.O_CLOEXEC, 0) // TFD_NONBLOCK, TFD_CLOEXEC
	if e != 0 {
		return -1, fmt.Errorf("timerfd_create: %w", e)
	}
	return int(fd), nil
}

// setTimerFD arms the timerfd fd to expire once, d from now (d > 0).
func setTimerFD(fd int, d time.Duration) error {
	spec := [4]int64{0, 0, int64(d / time.Second), int64(d % time.Second)} // interval, value
	_, _, e := syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, uintptr(fd), 0,
		uintptr(unsafe.Pointer(&spec[0])), 0, 0, 0)
	if e != 0 {
		return e
	}
	return nil
}
