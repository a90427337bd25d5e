package compare

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// topology is the director's namespace, holding a bridge at DirectorAddr, and
// one namespace per real server on that bridge, each with a listener on every
// port the scenario probes. The listeners count the connections they accept:
// that count is the number of probes that completed, whoever sent them.
type topology struct {
	prefix   string
	director string   // namespace name
	real     []string // namespace names, index j
	accepted []atomic.Uint64
	epfd     int
	fds      []int // listening sockets
	stopping atomic.Bool
	wg       sync.WaitGroup
}

// newTopology creates the namespaces and links; names start with prefix.
func newTopology(ctx context.Context, prefix string, realServers int) (t *topology, err error) {
	t = &topology{prefix: prefix, director: prefix + "-dir", accepted: make([]atomic.Uint64, realServers)}
	defer func() {
		if err != nil {
			t.close()
		}
	}()
	cmds := [][]string{
		{"netns", "add", t.director},
		{"-n", t.director, "link", "set", "lo", "up"},
		{"-n", t.director, "link", "add", "br0", "type", "bridge"},
		{"-n", t.director, "addr", "add", fmt.Sprintf("%s/%d", DirectorAddr, netPrefix), "dev", "br0"},
		{"-n", t.director, "link", "set", "br0", "up"},
	}
	for j := range realServers {
		ns := fmt.Sprintf("%s-rs%d", prefix, j)
		t.real = append(t.real, ns)
		port := fmt.Sprintf("rs%d", j)
		cmds = append(cmds,
			[]string{"netns", "add", ns},
			[]string{"-n", ns, "link", "set", "lo", "up"},
			[]string{"-n", t.director, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			[]string{"-n", t.director, "link", "set", port, "master", "br0", "up"},
			[]string{"-n", ns, "addr", "add", fmt.Sprintf("%s/%d", RealServerAddr(j), netPrefix), "dev", "eth0"},
			[]string{"-n", ns, "link", "set", "eth0", "up"},
		)
	}
	for _, c := range cmds {
		if err := ipCmd(ctx, c...); err != nil {
			return t, err
		}
	}
	return t, nil
}

// nsPath is the file of namespace name.
func nsPath(name string) string { return "/run/netns/" + name }

// listen opens a listener on each of ports on every real server and counts
// what they accept. All listeners share one epoll loop on a thread of its
// own that accepts and closes with raw system calls: at 5,000 probes per
// second under emulation, a goroutine per listener cost the real servers
// as much CPU as the daemon being measured.
func (t *topology) listen(ports []uint16) error {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create1: %w", err)
	}
	t.epfd = ep
	for j, ns := range t.real {
		addrs := make([]netip.AddrPort, len(ports))
		for i, p := range ports {
			addrs[i] = netip.AddrPortFrom(RealServerAddr(j), p)
		}
		fds, err := listenIn(nsPath(ns), addrs)
		t.fds = append(t.fds, fds...)
		if err != nil {
			return err
		}
		for _, fd := range fds {
			ev := unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd), Pad: int32(j)}
			if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
				return fmt.Errorf("epoll_ctl: %w", err)
			}
		}
	}
	t.wg.Add(1)
	go t.acceptLoop()
	return nil
}

// acceptLoop accepts and closes every connection the listeners receive, and
// counts them per real server, until close.
func (t *topology) acceptLoop() {
	defer t.wg.Done()
	runtime.LockOSThread()
	events := make([]unix.EpollEvent, 256)
	for !t.stopping.Load() {
		n, err := unix.EpollWait(t.epfd, events, 100)
		if err != nil && err != unix.EINTR {
			return
		}
		for _, ev := range events[:max(n, 0)] {
			for {
				c, _, errno := unix.RawSyscall6(unix.SYS_ACCEPT4, uintptr(ev.Fd), 0, 0, unix.SOCK_CLOEXEC, 0, 0)
				if errno != 0 {
					break
				}
				t.accepted[ev.Pad].Add(1)
				unix.RawSyscall(unix.SYS_CLOSE, c, 0, 0)
			}
		}
	}
}

// probes is the number of connections all real servers accepted so far.
func (t *topology) probes() uint64 {
	var n uint64
	for i := range t.accepted {
		n += t.accepted[i].Load()
	}
	return n
}

// setUp makes real server j answer (link up) or stop answering (link down:
// probes to it time out, as to a server that died).
func (t *topology) setUp(ctx context.Context, j int, up bool) error {
	state := "down"
	if up {
		state = "up"
	}
	return ipCmd(ctx, "-n", t.real[j], "link", "set", "eth0", state)
}

// close closes the listeners and deletes the namespaces.
func (t *topology) close() {
	t.stopping.Store(true)
	t.wg.Wait()
	for _, fd := range t.fds {
		unix.Close(fd)
	}
	t.fds = nil
	if t.epfd > 0 {
		unix.Close(t.epfd)
	}
	for _, ns := range append([]string{t.director}, t.real...) {
		if _, err := os.Stat(nsPath(ns)); err == nil {
			_ = ipCmd(context.Background(), "netns", "del", ns)
		}
	}
}

// listenIn opens non-blocking TCP listeners on addrs inside the network
// namespace at path. The thread that entered the namespace is never reused:
// its goroutine ends still locked, so the runtime discards it.
func listenIn(path string, addrs []netip.AddrPort) ([]int, error) {
	type result struct {
		fds []int
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		var r result
		defer func() { done <- r }()
		f, err := os.Open(path)
		if err != nil {
			r.err = fmt.Errorf("open network namespace %s: %w", path, err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			r.err = fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		for _, a := range addrs {
			fd, err := listenTCP4(a)
			if err != nil {
				r.err = fmt.Errorf("listen on %s in %s: %w", a, path, err)
				return
			}
			r.fds = append(r.fds, fd)
		}
	}()
	r := <-done
	return r.fds, r.err
}

// listenTCP4 opens a non-blocking listening socket on a.
func listenTCP4(a netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: a.Addr().As4(), Port: int(a.Port())}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// ipCmd runs iproute2's ip with args.
func ipCmd(ctx context.Context, args ...string) error {
	return run(ctx, "ip", args...)
}

// run runs a program and returns its error with its output.
func run(ctx context.Context, name string, args ...string) error {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
