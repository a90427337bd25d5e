//go:build linux && vm

package dataplane

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// netns is a network namespace a test created (ip netns add), removed in
// t.Cleanup. Names carry the test process's PID, so parallel or leftover runs
// cannot collide.
type netns struct {
	name, path string
}

func newNetns(tb testing.TB) netns {
	tb.Helper()
	name := fmt.Sprintf("ipvst%d-%08x", os.Getpid(), rand.Uint32())
	run(tb, "ip", "netns", "add", name)
	n := netns{name: name, path: "/run/netns/" + name}
	tb.Cleanup(func() { n.del(tb) })
	// The kernel refuses IPv4 destinations in a namespace without a local
	// routing table, which appears with the first address: bring lo up.
	n.ip(tb, "link", "set", "lo", "up")
	return n
}

// del deletes the namespace if it still exists.
func (n netns) del(tb testing.TB) {
	tb.Helper()
	if _, err := os.Stat(n.path); err != nil {
		return
	}
	if out, err := exec.Command("ip", "netns", "del", n.name).CombinedOutput(); err != nil {
		tb.Errorf("delete namespace %s: %v: %s", n.name, err, out)
	}
}

// ip runs "ip -n NS ARGS".
func (n netns) ip(tb testing.TB, args ...string) string {
	tb.Helper()
	return run(tb, "ip", append([]string{"-n", n.name}, args...)...)
}

// exec runs a command inside the namespace.
func (n netns) exec(tb testing.TB, args ...string) string {
	tb.Helper()
	return run(tb, "ip", append([]string{"netns", "exec", n.name}, args...)...)
}

// sysctl writes /proc/sys/<key> inside the namespace.
func (n netns) sysctl(tb testing.TB, key, value string) {
	tb.Helper()
	err := inNetns(n.path, func() error {
		return writeExisting("/proc/sys/"+strings.ReplaceAll(key, ".", "/"), value)
	})
	if err != nil {
		tb.Fatalf("sysctl %s=%s in %s: %v", key, value, n.name, err)
	}
}

func run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// countingKernel counts the netlink requests a handle sends, so tests can
// prove that an Apply wrote nothing.
type countingKernel struct {
	kernel
	writes, reads int
	requests      []int // writes per batched request
}

// WriteBatch counts the writes and the requests that carried them.
func (c *countingKernel) WriteBatch(ws []kernelWrite) []error {
	c.writes += len(ws)
	c.requests = append(c.requests, len(ws))
	return c.kernel.(batchKernel).WriteBatch(ws)
}

func (c *countingKernel) GetServices() ([]*moby.Service, error) {
	c.reads++
	return c.kernel.GetServices()
}

func (c *countingKernel) GetDestinations(s *moby.Service) ([]*moby.Destination, error) {
	c.reads++
	return c.kernel.GetDestinations(s)
}

func (c *countingKernel) NewService(s *moby.Service) error {
	c.writes++
	return c.kernel.NewService(s)
}

func (c *countingKernel) UpdateService(s *moby.Service) error {
	c.writes++
	return c.kernel.UpdateService(s)
}

func (c *countingKernel) DelService(s *moby.Service) error {
	c.writes++
	return c.kernel.DelService(s)
}

func (c *countingKernel) NewDestination(s *moby.Service, d *moby.Destination) error {
	c.writes++
	return c.kernel.NewDestination(s, d)
}

func (c *countingKernel) UpdateDestination(s *moby.Service, d *moby.Destination) error {
	c.writes++
	return c.kernel.UpdateDestination(s, d)
}

func (c *countingKernel) DelDestination(s *moby.Service, d *moby.Destination) error {
	c.writes++
	return c.kernel.DelDestination(s, d)
}

// openCounted opens a real handle in ns whose netlink requests are counted.
func openCounted(tb testing.TB, ns netns, opts ...Option) (*Handle, *countingKernel) {
	tb.Helper()
	var ck *countingKernel
	opts = append(opts, func(c *config) {
		c.newKernel = func(p string) (kernel, error) {
			k, err := openKernel(p)
			if err != nil {
				return nil, err
			}
			ck = &countingKernel{kernel: k}
			return ck, nil
		}
	})
	h, err := Open(ns.path, discard(), opts...)
	if err != nil {
		tb.Fatalf("Open(%s): %v", ns.path, err)
	}
	tb.Cleanup(func() { h.Close() })
	return h, ck
}

// ipvsadmService is one service as `ipvsadm -Ln` prints it.
type ipvsadmService struct {
	Header string   // "TCP  198.18.0.10:80 mh (mh-port)"
	Dests  []string // "10.0.2.23:80 Route 1", kernel list order
}

// ipvsadmList runs `ipvsadm -Ln` in ns and returns the services by address
// ("198.18.0.10:80", "[2001:db8::10]:443").
func ipvsadmList(tb testing.TB, ns netns) map[string]ipvsadmService {
	tb.Helper()
	out := ns.exec(tb, "ipvsadm", "-Ln")
	svcs := map[string]ipvsadmService{}
	cur := ""
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP"):
			cur = f[1]
			svcs[cur] = ipvsadmService{Header: strings.Join(f, " ")}
		case len(f) >= 4 && f[0] == "->" && cur != "" && f[1] != "RemoteAddress:Port":
			s := svcs[cur]
			s.Dests = append(s.Dests, strings.Join(f[1:4], " "))
			svcs[cur] = s
		}
	}
	return svcs
}

// procList reads /proc/net/ip_vs in ns: the kernel's own listing, whose
// destinations are in kernel list order (ipvsadm -Ln sorts them, so it cannot
// show the order). Keys and destinations use ipvsadm's text form:
// "198.18.0.10:80" -> ["10.0.2.23:80 Route 1", ...].
func procList(tb testing.TB, ns netns) map[string][]string {
	tb.Helper()
	out := ns.exec(tb, "cat", "/proc/net/ip_vs")
	svcs := map[string][]string{}
	cur := ""
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 2 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP"):
			cur = procAddr(tb, f[1])
			svcs[cur] = []string{}
		case len(f) >= 4 && f[0] == "->" && cur != "" && f[1] != "RemoteAddress:Port":
			svcs[cur] = append(svcs[cur], procAddr(tb, f[1])+" "+f[2]+" "+f[3])
		}
	}
	return svcs
}

// procAddr converts /proc/net/ip_vs addresses ("C612000A:0050",
// "[2001:0db8:...:0010]:01BB") to the usual form.
func procAddr(tb testing.TB, s string) string {
	tb.Helper()
	i := strings.LastIndex(s, ":")
	port, err := strconv.ParseUint(s[i+1:], 16, 16)
	if err != nil {
		tb.Fatalf("bad port in /proc/net/ip_vs address %q", s)
	}
	var a netip.Addr
	if strings.HasPrefix(s, "[") {
		a, err = netip.ParseAddr(strings.Trim(s[:i], "[]"))
	} else {
		var v uint64
		v, err = strconv.ParseUint(s[:i], 16, 32)
		a = netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	}
	if err != nil {
		tb.Fatalf("bad /proc/net/ip_vs address %q: %v", s, err)
	}
	return netip.AddrPortFrom(a, uint16(port)).String()
}

// trafficLab is client -> director (IPVS NAT) -> backend, three namespaces
// joined by veth pairs, for tests that need real connections.
//
//	client 10.99.1.2 --- 10.99.1.1 director 10.99.2.1 --- 10.99.2.2, 10.99.2.3 backend
//	                          VIP 10.99.9.9 on lo
type trafficLab struct {
	client, director, backend netns
}

const (
	labVIP      = "10.99.9.9"
	labBackendA = "10.99.2.2"
	labBackendB = "10.99.2.3"
	labPort     = 8080
)

func newTrafficLab(tb testing.TB) *trafficLab {
	tb.Helper()
	l := &trafficLab{client: newNetns(tb), director: newNetns(tb), backend: newNetns(tb)}
	l.director.ip(tb, "link", "add", "c1", "type", "veth", "peer", "name", "c0", "netns", l.client.name)
	l.director.ip(tb, "link", "add", "b1", "type", "veth", "peer", "name", "b0", "netns", l.backend.name)
	l.client.ip(tb, "addr", "add", "10.99.1.2/24", "dev", "c0")
	l.client.ip(tb, "link", "set", "c0", "up")
	l.client.ip(tb, "route", "add", "default", "via", "10.99.1.1")
	l.director.ip(tb, "addr", "add", "10.99.1.1/24", "dev", "c1")
	l.director.ip(tb, "addr", "add", "10.99.2.1/24", "dev", "b1")
	l.director.ip(tb, "addr", "add", labVIP+"/32", "dev", "lo")
	l.director.ip(tb, "link", "set", "c1", "up")
	l.director.ip(tb, "link", "set", "b1", "up")
	l.director.sysctl(tb, "net.ipv4.ip_forward", "1")
	l.backend.ip(tb, "addr", "add", labBackendA+"/24", "dev", "b0")
	l.backend.ip(tb, "addr", "add", labBackendB+"/24", "dev", "b0")
	l.backend.ip(tb, "link", "set", "b0", "up")
	l.backend.ip(tb, "route", "add", "default", "via", "10.99.2.1")
	l.serveEcho(tb)
	return l
}

// serveEcho runs a line echo server on the backend, prefixing each line with
// the local address that accepted the connection.
func (l *trafficLab) serveEcho(tb testing.TB) {
	tb.Helper()
	serveLines(tb, l.backend, fmt.Sprintf("0.0.0.0:%d", labPort), func(c net.Conn, line string) string {
		return c.LocalAddr().(*net.TCPAddr).IP.String() + " " + line
	})
}

// serveLines answers every line received on addr in ns with answer's line,
// until the test ends.
func serveLines(tb testing.TB, ns netns, addr string, answer func(c net.Conn, line string) string) {
	tb.Helper()
	var ln net.Listener
	err := inNetns(ns.path, func() error {
		var err error
		ln, err = net.Listen("tcp4", addr)
		return err
	})
	if err != nil {
		tb.Fatalf("listen on %s in %s: %v", addr, ns.name, err)
	}
	tb.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintf(c, "%s\n", answer(c, sc.Text())); err != nil {
						return
					}
				}
			}()
		}
	}()
}

// conn is a client connection to the VIP.
type conn struct {
	c *net.TCPConn
	r *bufio.Reader
}

func (l *trafficLab) dial(tb testing.TB) *conn {
	tb.Helper()
	var c net.Conn
	err := inNetns(l.client.path, func() error {
		var err error
		c, err = net.DialTimeout("tcp4", fmt.Sprintf("%s:80", labVIP), 5*time.Second)
		return err
	})
	if err != nil {
		tb.Fatalf("dial the VIP from the client namespace: %v", err)
	}
	tb.Cleanup(func() { c.Close() })
	return &conn{c: c.(*net.TCPConn), r: bufio.NewReader(c)}
}

// echo sends a line and returns which backend address answered; it fails the
// test if the connection is broken.
func (c *conn) echo(tb testing.TB, msg string) string {
	tb.Helper()
	c.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(c.c, "%s\n", msg); err != nil {
		tb.Fatalf("send %q on the established connection: %v", msg, err)
	}
	line, err := c.r.ReadString('\n')
	if err != nil {
		tb.Fatalf("read the echo of %q on the established connection: %v", msg, err)
	}
	backend, got, _ := strings.Cut(strings.TrimSpace(line), " ")
	if got != msg {
		tb.Fatalf("echo = %q, want %q", got, msg)
	}
	return backend
}

// reset closes with a TCP reset so IPVS expires the entry in seconds (CLOSE
// state) rather than minutes (TIME_WAIT).
func (c *conn) reset() {
	c.c.SetLinger(0)
	c.c.Close()
}

// newSchedNetns is a director namespace for scheduling tests: VIP
// 198.18.0.10 on lo and a route to the real servers' 10.0.2.0/24 over a veth
// pair that leads nowhere, so SYNs are scheduled and sent but never answered.
func newSchedNetns(tb testing.TB) netns {
	tb.Helper()
	ns := newNetns(tb)
	ns.ip(tb, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
	ns.ip(tb, "addr", "add", "10.0.2.1/24", "dev", "v0")
	ns.ip(tb, "link", "set", "v0", "up")
	ns.ip(tb, "link", "set", "v1", "up")
	ns.ip(tb, "addr", "add", "198.18.0.10/32", "dev", "lo")
	return ns
}

// scheduleLocal opens n connections from the namespace itself to
// 198.18.0.10:80, from source ports basePort..basePort+n-1, and returns the
// real server IPVS chose for each ("198.18.0.10:40001" -> "10.0.2.23:80") as
// its connection table shows. Flows that found no real server are absent.
func scheduleLocal(tb testing.TB, ns netns, basePort, n int) map[string]string {
	tb.Helper()
	var fds []int
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	err := inNetns(ns.path, func() error {
		for p := range n {
			fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
			if err != nil {
				return err
			}
			fds = append(fds, fd)
			if err := unix.Bind(fd, &unix.SockaddrInet4{Port: basePort + p}); err != nil {
				return err
			}
			err = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{198, 18, 0, 10}, Port: 80})
			if err != nil && !errors.Is(err, unix.EINPROGRESS) {
				return err
			}
		}
		return nil
	})
	if err != nil {
		tb.Fatalf("connect from %s: %v", ns.name, err)
	}
	got := map[string]string{}
	for _, line := range strings.Split(ns.exec(tb, "ipvsadm", "-Lnc"), "\n") {
		f := strings.Fields(line)
		if len(f) != 6 || f[0] != "TCP" || f[4] != "198.18.0.10:80" {
			continue
		}
		src, err := netip.ParseAddrPort(f[3])
		if err == nil && int(src.Port()) >= basePort && int(src.Port()) < basePort+n {
			got[f[3]] = f[5]
		}
	}
	return got
}
