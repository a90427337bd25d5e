package compare

import (
	"context"
	"errors"
	"fmt"
	"net"
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
	mu       sync.Mutex
	lns      []net.Listener
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
// what they accept.
func (t *topology) listen(ports []uint16) error {
	for j, ns := range t.real {
		addrs := make([]netip.AddrPort, len(ports))
		for i, p := range ports {
			addrs[i] = netip.AddrPortFrom(RealServerAddr(j), p)
		}
		lns, err := listenIn(nsPath(ns), addrs)
		t.mu.Lock()
		t.lns = append(t.lns, lns...)
		t.mu.Unlock()
		if err != nil {
			return err
		}
		for _, ln := range lns {
			t.wg.Add(1)
			go t.accept(ln, &t.accepted[j])
		}
	}
	return nil
}

// accept counts and closes every connection ln accepts until ln is closed.
func (t *topology) accept(ln net.Listener, n *atomic.Uint64) {
	defer t.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // EMFILE and the like: try again
		}
		n.Add(1)
		c.Close()
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
	t.mu.Lock()
	for _, ln := range t.lns {
		ln.Close()
	}
	t.lns = nil
	t.mu.Unlock()
	t.wg.Wait()
	for _, ns := range append([]string{t.director}, t.real...) {
		if _, err := os.Stat(nsPath(ns)); err == nil {
			_ = ipCmd(context.Background(), "netns", "del", ns)
		}
	}
}

// listenIn opens TCP listeners on addrs inside the network namespace at path.
// The thread that entered the namespace is never reused: its goroutine ends
// still locked, so the runtime discards it.
func listenIn(path string, addrs []netip.AddrPort) ([]net.Listener, error) {
	type result struct {
		lns []net.Listener
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
			ln, err := net.Listen("tcp4", a.String())
			if err != nil {
				r.err = fmt.Errorf("listen on %s in %s: %w", a, path, err)
				return
			}
			r.lns = append(r.lns, ln)
		}
	}()
	r := <-done
	return r.lns, r.err
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
