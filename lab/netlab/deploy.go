package netlab

import (
	"context"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/runner"
	"github.com/anycast-director/director/lab/topology"
)

// Topo is a deployed test topology: its nodes are NS, so a test drives them
// like the namespaces of New.
type Topo struct {
	t     testing.TB
	lab   *runner.Lab
	dir   string
	nodes map[string]*NS
}

// Deploy runs the test topology lab/topology/tests/NAME.clab.yml with the
// lab runner (its nodes run the host image: nothing starts until the test
// starts it) and registers its removal. It skips the test when not running
// as root.
func Deploy(t testing.TB, name string) *Topo {
	t.Helper()
	skipUnlessRoot(t)
	topo, err := topology.Test(name)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	dir, err := os.MkdirTemp("", "netlab-"+name+"-")
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab, err := runner.Deploy(ctx, topo, runner.Options{Images: topology.Images(""), StateDir: dir,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		os.RemoveAll(dir)
		t.Fatalf("netlab: deploy %s: %v", topo.Path, err)
	}
	d := &Topo{t: t, lab: lab, dir: dir, nodes: map[string]*NS{}}
	t.Cleanup(d.cleanup)
	return d
}

// cleanup destroys the lab and removes its folder unless the test failed or
// NETLAB_KEEP is set.
func (d *Topo) cleanup() {
	if err := d.lab.Destroy(); err != nil {
		d.t.Errorf("netlab: %v", err)
	}
	if d.t.Failed() || os.Getenv("NETLAB_KEEP") != "" {
		d.t.Logf("netlab: lab folder kept for inspection (logs/ has every process's output): %s", d.dir)
		return
	}
	if err := os.RemoveAll(d.dir); err != nil {
		d.t.Errorf("netlab: %v", err)
	}
}

// Node returns a linux node of the topology.
func (d *Topo) Node(name string) *NS {
	d.t.Helper()
	if ns := d.nodes[name]; ns != nil && !ns.node.Removed() {
		return ns
	}
	n, err := d.lab.Node(name)
	if err != nil {
		d.t.Fatalf("netlab: %v", err)
	}
	ns := wrap(d.t, n)
	d.nodes[name] = ns
	return ns
}

// Runner is the lab runner's handle: restart, stop and start nodes, their
// logs.
func (d *Topo) Runner() *runner.Lab { return d.lab }

// Dir is the lab's folder (logs/ has every process's output); files a test
// writes there are removed with the lab.
func (d *Topo) Dir() string { return d.dir }

// Prefix is the unique prefix of every namespace name in this lab.
func (d *Topo) Prefix() string { return d.lab.Prefix() }

// LinkIf returns the name of node's interface on its link to peer.
func (d *Topo) LinkIf(node, peer string) string {
	d.t.Helper()
	for _, lk := range d.lab.Topo.LinksOf(node) {
		switch {
		case lk.A.Node == node && lk.B.Node == peer:
			return lk.A.Interface
		case lk.B.Node == node && lk.A.Node == peer:
			return lk.B.Interface
		}
	}
	d.t.Fatalf("netlab: %s has no link to %s in %s", node, peer, d.lab.Topo.Name)
	return ""
}
