// Package netlab is the testing.TB face of the lab core (lab/nslab): every
// call that fails fails the test, and everything a lab creates is removed in
// t.Cleanup (processes killed by PID, then the namespaces; the lab's folder,
// with one log file per process, is kept when the test failed or NETLAB_KEEP
// is set). Tests using it need root; New and Deploy skip the test with a
// clear message otherwise.
//
// A test gets its network one of two ways:
//
//   - Deploy runs a containerlab topology file with lab/runner (the test
//     topologies are in lab/topology/tests) and hands out its nodes;
//   - New and Namespace build one by hand, for a test that needs a single
//     namespace or an unusual shape.
//
// Either way a node is an NS: run commands, start processes, FRR or BIRD in
// it, read its FIB and watch its route changes. Typical use:
//
//	lab := netlab.Deploy(t, topology.Test(t, "rtr3"))
//	rtr := lab.Node("rtr")
//	frr := rtr.StartFRR(frrConf, "bgpd", "bfdd")
//	netlab.MustWait(t, 5*time.Second, "session up", func() error { ... })
package netlab

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/anycast-director/director/lab/nslab"
)

// skipUnlessRoot skips tests that cannot create namespaces.
func skipUnlessRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("netlab: this test needs root to create network namespaces; run it as root (make test-privileged)")
	}
}

// Lab owns the namespaces, processes and files of one test.
type Lab struct {
	t   testing.TB
	lab *nslab.Lab
}

// New creates an empty lab and registers its cleanup. It skips the test when
// not running as root.
func New(t testing.TB) *Lab {
	t.Helper()
	skipUnlessRoot(t)
	lab, err := nslab.New(nslab.Options{})
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(func() { cleanup(t, lab.Close, lab) })
	return &Lab{t: t, lab: lab}
}

// cleanup removes a lab's processes and namespaces, then its folder unless
// the test failed or NETLAB_KEEP is set.
func cleanup(t testing.TB, closeLab func() error, lab *nslab.Lab) {
	if err := closeLab(); err != nil {
		t.Errorf("netlab: %v", err)
	}
	if t.Failed() || os.Getenv("NETLAB_KEEP") != "" {
		t.Logf("netlab: lab folder kept for inspection (logs/ has every process's output): %s", lab.Dir())
		return
	}
	if err := lab.RemoveDir(); err != nil {
		t.Errorf("netlab: %v", err)
	}
}

// Prefix is the unique prefix of every namespace name in this lab.
func (l *Lab) Prefix() string { return l.lab.Prefix() }

// Dir is the lab's folder; it is removed at cleanup.
func (l *Lab) Dir() string { return l.lab.Dir() }

// Core is the lab core behind the wrapper.
func (l *Lab) Core() *nslab.Lab { return l.lab }

// NS is a node of a lab: a network namespace, possibly with its own mount
// and UTS namespaces.
type NS struct {
	t    testing.TB
	node *nslab.Node
	// Name is the full namespace name (lab prefix + short name), as used by
	// `ip netns exec` and `ip -n`.
	Name string
	// Short is the node's name in the lab.
	Short string
}

func wrap(t testing.TB, n *nslab.Node) *NS {
	return &NS{t: t, node: n, Name: n.NetNS, Short: n.Name}
}

// Node is the lab core's node behind the wrapper.
func (ns *NS) Node() *nslab.Node { return ns.node }

// Namespace creates a network namespace with lo up. IPv6 duplicate address
// detection is off for its links, so addresses are usable at once.
func (l *Lab) Namespace(short string) *NS {
	l.t.Helper()
	n, err := l.lab.AddNode(context.Background(), short, nslab.NodeOptions{})
	if err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	ns := wrap(l.t, n)
	ns.Sysctl("net.ipv6.conf.default.accept_dad", "0")
	ns.Sysctl("net.ipv6.conf.all.accept_dad", "0")
	return ns
}

// Link connects a and b with a veth pair, assigns the addresses (CIDR
// notation, IPv4 or IPv6) to each end, brings both ends up and returns the
// interface names (eth0, eth1, ... per namespace).
func (l *Lab) Link(a *NS, aAddrs []string, b *NS, bAddrs []string) (aIf, bIf string) {
	l.t.Helper()
	aIf, bIf = a.node.NextIf(), b.node.NextIf()
	if err := nslab.Link(context.Background(), a.node, aIf, b.node, bIf, 0); err != nil {
		l.t.Fatalf("netlab: %v", err)
	}
	for _, addr := range aAddrs {
		a.AddAddr(aIf, addr)
	}
	for _, addr := range bAddrs {
		b.AddAddr(bIf, addr)
	}
	return aIf, bIf
}

// AddAddr adds an address (CIDR notation) to a device; IPv6 addresses skip
// duplicate address detection so they are usable at once.
func (ns *NS) AddAddr(dev, cidr string) {
	ns.t.Helper()
	if err := ns.node.AddAddr(context.Background(), dev, cidr); err != nil {
		ns.t.Fatalf("netlab: %v", err)
	}
}

// Sysctl sets a sysctl inside the namespace (net.* keys are per namespace).
func (ns *NS) Sysctl(key, value string) {
	ns.t.Helper()
	if err := ns.node.Sysctls(context.Background(), map[string]string{key: value}); err != nil {
		ns.t.Fatalf("netlab: %v", err)
	}
}

// Router makes the namespace forward IPv4 and IPv6 and hash ECMP flows on
// addresses and ports (fib_multipath_hash_policy=1), so one client spreads
// over several next hops.
func (ns *NS) Router() {
	ns.t.Helper()
	ns.Sysctl("net.ipv4.ip_forward", "1")
	ns.Sysctl("net.ipv6.conf.all.forwarding", "1")
	ns.Sysctl("net.ipv4.fib_multipath_hash_policy", "1")
	ns.Sysctl("net.ipv6.fib_multipath_hash_policy", "1")
}

// Run runs a command inside the namespace and returns its combined output.
func (ns *NS) Run(args ...string) (string, error) {
	return ns.node.CombinedOutput(context.Background(), args...)
}

// MustRun is Run that fails the test on error.
func (ns *NS) MustRun(args ...string) string {
	ns.t.Helper()
	out, err := ns.Run(args...)
	if err != nil {
		ns.t.Fatalf("netlab: %v", err)
	}
	return out
}

// Proc is a process started inside a namespace.
type Proc = nslab.Proc

// Start runs argv inside the namespace with extra environment variables
// ("KEY=value"); name labels it in logs. It is killed at cleanup.
func (ns *NS) Start(name string, env []string, argv ...string) *Proc {
	ns.t.Helper()
	p, err := ns.node.Start(strings.TrimPrefix(name, ns.Short+"/"), env, argv...)
	if err != nil {
		ns.t.Fatalf("netlab: %v", err)
	}
	return p
}
