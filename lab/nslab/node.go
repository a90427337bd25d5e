package nslab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// holderReady is the line an isolated node's holder prints once its mount
// namespace is ready.
const holderReady = "NSLAB-NODE-READY"

// NodeOptions shape a node.
type NodeOptions struct {
	// Isolated gives the node its own mount and UTS namespaces besides the
	// network namespace, held by a sleeping holder process: the hostname
	// is the node's name, and Setup (shell commands, run in the new mount
	// namespace before the node counts as started) can mount what the node
	// should see. Without it, processes see the machine's files and
	// hostname.
	Isolated bool
	Setup    string
	// Env is the environment of the node's processes (nil: this process's).
	Env []string
}

// Node is a network namespace of a lab, possibly with its own mount and UTS
// namespaces, and the processes started in it.
type Node struct {
	// Name is the node's short name.
	Name string
	// NetNS is the network namespace's name (lab prefix + Name), as
	// `ip netns exec` and `ip -n` take it.
	NetNS string

	lab    *Lab
	opts   NodeOptions
	holder *Proc // nil unless Isolated

	mu      sync.Mutex
	ifs     int // interfaces named by NextIf so far
	removed bool
}

// AddNode creates a node: its network namespace with lo up and, when
// isolated, its holder.
func (l *Lab) AddNode(ctx context.Context, name string, o NodeOptions) (_ *Node, err error) {
	n := &Node{Name: name, NetNS: l.prefix + name, lab: l, opts: o}
	if _, err := run(ctx, "ip", "netns", "add", n.NetNS); err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.nodes = append(l.nodes, n)
	l.mu.Unlock()
	defer func() {
		if err != nil {
			err = errors.Join(err, n.Remove())
		}
	}()
	if _, err := run(ctx, "ip", "-n", n.NetNS, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	if o.Isolated {
		if err := n.startHolder(ctx); err != nil {
			return nil, fmt.Errorf("node %s: %w", name, err)
		}
	}
	return n, nil
}

// startHolder starts the process that owns the node's mount and UTS
// namespaces and waits until its setup is done.
func (n *Node) startHolder(ctx context.Context) error {
	script := fmt.Sprintf("set -eu\nhostname %s\n%s\necho %s\nexec sleep infinity\n", ShellQuote(n.Name), n.opts.Setup, holderReady)
	// ip netns exec enters the network namespace and remounts /sys for it;
	// unshare then gives the node private mount and UTS namespaces, which
	// every later nsenter joins.
	cmd := exec.Command("ip", "netns", "exec", n.NetNS, "unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", script)
	cmd.Dir = "/"
	p, err := n.lab.startProc(n, n.Name+"/holder", cmd)
	if err != nil {
		return err
	}
	n.holder = p
	if _, _, err := p.WaitOutput(holderReady, 0, time.Minute); err != nil {
		return fmt.Errorf("the namespace holder failed: %w", err)
	}
	// For people poking at a running lab: nsenter -t $(cat FILE) -a.
	return os.WriteFile(filepath.Join(n.lab.dir, n.Name+".pid"), []byte(fmt.Sprintf("%d\n", p.PID)), 0o644)
}

// Lab is the lab the node belongs to.
func (n *Node) Lab() *Lab { return n.lab }

// PID is the holder's PID for an isolated node (/proc/PID/net shows the
// node's network state without starting anything in it), 0 otherwise.
func (n *Node) PID() int {
	if n.holder == nil {
		return 0
	}
	return n.holder.PID
}

// NetNSPath is the network namespace's file, for setns(2).
func (n *Node) NetNSPath() string { return "/run/netns/" + n.NetNS }

// HostPath returns where a path inside the node can be read and written
// from outside it: through the holder's root for an isolated node, the path
// itself otherwise.
func (n *Node) HostPath(p string) string {
	if n.holder == nil {
		return p
	}
	return filepath.Join(fmt.Sprintf("/proc/%d/root", n.holder.PID), p)
}

// Command builds a command that runs argv inside the node with extra
// environment variables ("KEY=value").
func (n *Node) Command(ctx context.Context, argv []string, env ...string) *exec.Cmd {
	var full []string
	if n.holder != nil {
		full = append([]string{"nsenter", "-t", strconv.Itoa(n.holder.PID), "-n", "-m", "-u", "-r", "-w", "--"}, argv...)
	} else {
		full = append([]string{"ip", "netns", "exec", n.NetNS}, argv...)
	}
	var cmd *exec.Cmd
	if ctx != nil {
		cmd = exec.CommandContext(ctx, full[0], full[1:]...)
	} else {
		cmd = exec.Command(full[0], full[1:]...)
	}
	base := n.opts.Env
	if base == nil {
		base = os.Environ()
	}
	cmd.Env = append(slices.Clone(base), env...)
	return cmd
}

// Exec runs argv inside the node and returns its standard output; the error
// carries the exit status and standard error.
func (n *Node) Exec(ctx context.Context, argv ...string) (string, error) {
	cmd := n.Command(ctx, argv)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %s: %w: %s", n.Name, strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// CombinedOutput runs argv inside the node and returns its standard output
// and error together.
func (n *Node) CombinedOutput(ctx context.Context, argv ...string) (string, error) {
	out, err := n.Command(ctx, argv).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w: %s", n.Name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Start runs argv in the background inside the node with extra environment
// variables; name labels it in logs as node/name. The lab kills it at Close.
func (n *Node) Start(name string, env []string, argv ...string) (*Proc, error) {
	if n.Removed() {
		return nil, fmt.Errorf("start %s: node %s is removed", name, n.Name)
	}
	return n.lab.startProc(n, n.Name+"/"+name, n.Command(nil, argv, env...))
}

// Sysctls sets sysctls inside the node (net.* keys are per namespace), in
// key order.
func (n *Node) Sysctls(ctx context.Context, kv map[string]string) error {
	if len(kv) == 0 {
		return nil
	}
	keys := make([]string, 0, len(kv))
	for k := range kv {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	argv := []string{"sysctl", "-q", "-w"}
	for _, k := range keys {
		argv = append(argv, k+"="+kv[k])
	}
	_, err := n.CombinedOutput(ctx, argv...)
	return err
}

// NextIf returns the next interface name of the node in the sequence eth0,
// eth1, ..., for labs that name links by order.
func (n *Node) NextIf() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	name := fmt.Sprintf("eth%d", n.ifs)
	n.ifs++
	return name
}

// AddAddr adds an address (CIDR notation) to a device; IPv6 addresses skip
// duplicate address detection so they are usable at once.
func (n *Node) AddAddr(ctx context.Context, dev, cidr string) error {
	argv := []string{"ip", "-n", n.NetNS, "addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		argv = append(argv, "nodad")
	}
	_, err := run(ctx, argv...)
	return err
}

// Link connects two nodes with a veth pair named aIf in a and bIf in b,
// with an MTU unless mtu is 0, and brings both ends up. The pair is created
// inside a with its peer moved straight into b, so the names never meet in
// the root namespace.
func Link(ctx context.Context, a *Node, aIf string, b *Node, bIf string, mtu int) error {
	argv := []string{"ip", "-n", a.NetNS, "link", "add", aIf}
	if mtu > 0 {
		argv = append(argv, "mtu", strconv.Itoa(mtu))
	}
	argv = append(argv, "type", "veth", "peer", "name", bIf)
	if mtu > 0 {
		argv = append(argv, "mtu", strconv.Itoa(mtu))
	}
	argv = append(argv, "netns", b.NetNS)
	if _, err := run(ctx, argv...); err != nil {
		return err
	}
	for _, end := range []struct {
		n   *Node
		dev string
	}{{a, aIf}, {b, bIf}} {
		if _, err := run(ctx, "ip", "-n", end.n.NetNS, "link", "set", end.dev, "up"); err != nil {
			return err
		}
	}
	return nil
}

// AddBridge creates a Linux bridge in the node and brings it up.
func (n *Node) AddBridge(ctx context.Context, name string) error {
	if _, err := run(ctx, "ip", "-n", n.NetNS, "link", "add", name, "type", "bridge"); err != nil {
		return err
	}
	_, err := run(ctx, "ip", "-n", n.NetNS, "link", "set", name, "up")
	return err
}

// Enslave makes dev a port of the node's bridge.
func (n *Node) Enslave(ctx context.Context, dev, bridge string) error {
	_, err := run(ctx, "ip", "-n", n.NetNS, "link", "set", dev, "master", bridge)
	return err
}

// Procs returns the node's processes that are still running (not the
// holder), in start order.
func (n *Node) Procs() []*Proc {
	var out []*Proc
	for _, p := range n.lab.Procs() {
		if p.node == n && p != n.holder && !p.Exited() {
			out = append(out, p)
		}
	}
	return out
}

// SignalAll sends sig to every process in the node's network namespace but
// the holder (SIGSTOP freezes the node like `docker pause`), and returns how
// many got it.
func (n *Node) SignalAll(sig syscall.Signal) (int, error) {
	pids, err := namespacePids(n.NetNS)
	if err != nil {
		return 0, fmt.Errorf("list processes of %s: %w", n.Name, err)
	}
	count := 0
	for _, pid := range pids {
		if pid == n.PID() {
			continue
		}
		if err := syscall.Kill(pid, sig); err == nil {
			count++
		}
	}
	return count, nil
}

// Removed reports whether the node was removed.
func (n *Node) Removed() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.removed
}

// Remove ends the node like a host that loses power: its interfaces are
// deleted first (so the peers of its veth pairs vanish before Remove
// returns, which deleting the namespace alone does asynchronously, and no
// process can say goodbye on the wire), then its processes are killed by
// PID, then any other process left in its network namespace, then the
// holder, then the namespace. It is safe to call more than once.
func (n *Node) Remove() error {
	n.mu.Lock()
	if n.removed {
		n.mu.Unlock()
		return nil
	}
	n.removed = true
	n.mu.Unlock()
	// The wires first, as when a host loses power: processes killed while
	// their links are up close their TCP sessions (FIN), which a router
	// running BGP Graceful Restart takes for a planned restart and keeps
	// the dead director's routes for restart_time instead of following BFD.
	for _, dev := range n.links() {
		exec.Command("ip", "-n", n.NetNS, "link", "del", dev).Run()
	}
	for _, p := range slices.Backward(n.Procs()) {
		p.Kill()
	}
	var errs []error
	if err := killNamespacePids(n.NetNS, n.PID()); err != nil {
		errs = append(errs, err)
	}
	if n.holder != nil {
		n.holder.Kill()
	}
	if out, err := exec.Command("ip", "netns", "del", n.NetNS).CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("delete namespace %s: %v: %s", n.NetNS, err, out))
	}
	return errors.Join(errs...)
}

// links lists the node's interfaces other than lo.
func (n *Node) links() []string {
	out, err := exec.Command("ip", "-n", n.NetNS, "-o", "link", "show").Output()
	if err != nil {
		return nil
	}
	var devs []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		dev, _, _ := strings.Cut(strings.TrimSuffix(f[1], ":"), "@")
		if dev != "lo" {
			devs = append(devs, dev)
		}
	}
	return devs
}

// namespacePids lists the processes in a network namespace.
func namespacePids(ns string) ([]int, error) {
	out, err := exec.Command("ip", "netns", "pids", ns).Output()
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

// killNamespacePids kills, by PID, every process still in a network
// namespace but except (processes that commands left behind).
func killNamespacePids(ns string, except int) error {
	for range 5 {
		pids, err := namespacePids(ns)
		if err != nil {
			return nil // namespace gone
		}
		pids = slices.DeleteFunc(pids, func(pid int) bool { return pid == except || pid == os.Getpid() })
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("processes keep appearing in namespace %s", ns)
}

// ShellQuote quotes s for a POSIX shell.
func ShellQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}
