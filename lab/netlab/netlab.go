// Package netlab builds throwaway network labs for privileged tests:
// network namespaces with a per-run unique name prefix, veth links with IPv4
// and IPv6 addresses, per-namespace sysctls, FRR daemons with a private
// folder each, any other process started inside a namespace, readers for
// FRR's JSON output and the kernel FIB, and wait helpers with deadlines.
//
// Everything a Lab creates is removed in t.Cleanup: processes first (killed by
// their PID), then the namespaces, then the lab's folder (kept when the test
// failed or NETLAB_KEEP is set, for the daemons' logs). Tests using it need
// root; New skips the test with a clear message otherwise.
//
// Typical use:
//
//	lab := netlab.New(t)
//	rtr, d1 := lab.Namespace("rtr"), lab.Namespace("d1")
//	rtr.Sysctl("net.ipv4.fib_multipath_hash_policy", "1")
//	lab.Link(rtr, []string{"10.0.1.1/24"}, d1, []string{"10.0.1.11/24"})
//	frr := rtr.StartFRR(frrConf, "bgpd", "bfdd")
//	netlab.MustWait(t, 5*time.Second, "session up", func() error { ... })
//
// The package shells out to iproute2 (ip), sysctl and FRR's vtysh; it sets
// no process-wide state and never enters a namespace itself, so tests may run
// in parallel.
package netlab

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// Lab owns the namespaces, processes and files of one test.
type Lab struct {
	t      testing.TB
	prefix string // per-run unique namespace prefix, e.g. "nl3fa2c1-"
	dir    string // lab folder (world-traversable so FRR, running as frr, can use it)

	mu         sync.Mutex
	namespaces []*NS
	procs      []*Proc
	links      int
}

// New creates an empty lab and registers its cleanup. It skips the test when
// not running as root.
func New(t testing.TB) *Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab: this test needs root to create network namespaces; run it as root (make test-privileged)")
	}
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("netlab: random namespace prefix: %v", err)
	}
	l := &Lab{t: t, prefix: "nl" + hex.EncodeToString(b[:]) + "-"}
	dir, err := os.MkdirTemp("", "netlab-"+l.prefix)
	if err != nil {
		t.Fatalf("netlab: create lab folder: %v", err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatalf("netlab: open lab folder %s for the frr user: %v", dir, err)
	}
	l.dir = dir
	t.Cleanup(l.cleanup)
	return l
}

// Prefix is the unique prefix of every namespace name in this lab.
func (l *Lab) Prefix() string { return l.prefix }

// Dir is the lab's folder; it is removed at cleanup.
func (l *Lab) Dir() string { return l.dir }

// NS is a network namespace of a lab.
type NS struct {
	lab *Lab
	// Name is the full namespace name (lab prefix + short name), as used by
	// `ip netns exec` and `ip -n`.
	Name string
	// Short is the name given to Namespace.
	Short string
	ifs   int // interfaces created so far (eth0, eth1, ...)
}

// Namespace creates a network namespace with lo up.
func (l *Lab) Namespace(short string) *NS {
	l.t.Helper()
	ns := &NS{lab: l, Name: l.prefix + short, Short: short}
	l.mustRun("ip", "netns", "add", ns.Name)
	l.mu.Lock()
	l.namespaces = append(l.namespaces, ns)
	l.mu.Unlock()
	ns.MustRun("ip", "link", "set", "lo", "up")
	// IPv6 addresses are added with nodad; also keep new links from running
	// DAD so link-local addresses are usable at once.
	ns.Sysctl("net.ipv6.conf.default.accept_dad", "0")
	ns.Sysctl("net.ipv6.conf.all.accept_dad", "0")
	return ns
}

// Link connects a and b with a veth pair, assigns the addresses (CIDR
// notation, IPv4 or IPv6) to each end, brings both ends up and returns the
// interface names (eth0, eth1, ... per namespace).
func (l *Lab) Link(a *NS, aAddrs []string, b *NS, bAddrs []string) (aIf, bIf string) {
	l.t.Helper()
	aIf, bIf = a.nextIf(), b.nextIf()
	// Create the pair inside a and move the peer end straight into b, so the
	// names never meet in the root namespace.
	l.mustRun("ip", "-n", a.Name, "link", "add", aIf, "type", "veth", "peer", "name", bIf, "netns", b.Name)
	for _, end := range []struct {
		ns    *NS
		dev   string
		addrs []string
	}{{a, aIf, aAddrs}, {b, bIf, bAddrs}} {
		for _, addr := range end.addrs {
			end.ns.AddAddr(end.dev, addr)
		}
		end.ns.MustRun("ip", "link", "set", end.dev, "up")
	}
	return aIf, bIf
}

// nextIf returns the next free interface name of the namespace.
func (ns *NS) nextIf() string {
	ns.lab.mu.Lock()
	defer ns.lab.mu.Unlock()
	name := fmt.Sprintf("eth%d", ns.ifs)
	ns.ifs++
	return name
}

// AddAddr adds an address (CIDR notation) to a device; IPv6 addresses skip
// duplicate address detection so they are usable at once.
func (ns *NS) AddAddr(dev, cidr string) {
	ns.lab.t.Helper()
	args := []string{"ip", "addr", "add", cidr, "dev", dev}
	if strings.Contains(cidr, ":") {
		args = append(args, "nodad")
	}
	ns.MustRun(args...)
}

// Sysctl sets a sysctl inside the namespace (net.* keys are per namespace).
func (ns *NS) Sysctl(key, value string) {
	ns.lab.t.Helper()
	ns.MustRun("sysctl", "-qw", key+"="+value)
}

// Router makes the namespace forward IPv4 and IPv6 and hash ECMP flows on
// addresses and ports (fib_multipath_hash_policy=1), so one client spreads
// over several next hops.
func (ns *NS) Router() {
	ns.lab.t.Helper()
	ns.Sysctl("net.ipv4.ip_forward", "1")
	ns.Sysctl("net.ipv6.conf.all.forwarding", "1")
	ns.Sysctl("net.ipv4.fib_multipath_hash_policy", "1")
	ns.Sysctl("net.ipv6.fib_multipath_hash_policy", "1")
}

// Run runs a command inside the namespace and returns its combined output.
func (ns *NS) Run(args ...string) (string, error) {
	full := append([]string{"ip", "netns", "exec", ns.Name}, args...)
	out, err := exec.Command(full[0], full[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s in %s: %w: %s", strings.Join(args, " "), ns.Name, err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(args ...string) string {
	ns.lab.t.Helper()
	out, err := ns.Run(args...)
	if err != nil {
		ns.lab.t.Fatalf("netlab: %v", err)
	}
	return out
}

// mustRun runs a command in the root namespace and fails the test on error.
func (l *Lab) mustRun(args ...string) string {
	l.t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		l.t.Fatalf("netlab: %s: %v: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out)
}

// cleanup kills every process (by PID), deletes the namespaces and the folder.
func (l *Lab) cleanup() {
	l.mu.Lock()
	procs := slices.Clone(l.procs)
	nss := slices.Clone(l.namespaces)
	l.mu.Unlock()
	for _, p := range slices.Backward(procs) {
		p.Kill()
	}
	for _, ns := range slices.Backward(nss) {
		if out, err := exec.Command("ip", "netns", "del", ns.Name).CombinedOutput(); err != nil {
			l.t.Errorf("netlab: delete namespace %s: %v: %s", ns.Name, err, out)
		}
	}
	if l.t.Failed() || os.Getenv("NETLAB_KEEP") != "" {
		l.t.Logf("netlab: lab folder kept for inspection: %s", l.dir)
		return
	}
	if err := os.RemoveAll(l.dir); err != nil {
		l.t.Errorf("netlab: remove %s: %v", l.dir, err)
	}
}

// subdir creates a folder for one namespace's files, owned by uid:gid when
// they are not -1.
func (l *Lab) subdir(name string, uid, gid int) string {
	l.t.Helper()
	dir := filepath.Join(l.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		l.t.Fatalf("netlab: create %s: %v", dir, err)
	}
	if uid != -1 {
		if err := os.Chown(dir, uid, gid); err != nil {
			l.t.Fatalf("netlab: chown %s: %v", dir, err)
		}
	}
	return dir
}
