package runner

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/anycast-director/director/lab/nslab"
)

// Role is how a node's image behaves when the node has no cmd.
type Role int

const (
	// RoleCommand runs the node's cmd; the image has no default the runner
	// knows, so cmd is required.
	RoleCommand Role = iota
	// RoleFRR is FRR's container image: it starts zebra, staticd and every
	// daemon enabled in the bound /etc/frr/daemons (with its *_options),
	// then loads /etc/frr/frr.conf with vtysh -b, as the image's
	// docker-start does through watchfrr.
	RoleFRR
	// RoleBIRD runs BIRD with the bound /etc/bird/bird.conf, its control
	// socket at /run/bird/bird.ctl.
	RoleBIRD
	// RoleIdle runs nothing until someone starts a process in the node (a
	// test, through Start or Exec).
	RoleIdle
)

// Image tells the runner how to emulate one container image with the
// machine's own userspace.
type Image struct {
	// Repository is matched against a node's image without its tag or
	// digest, e.g. "quay.io/frrouting/frr".
	Repository string
	// Role is what the image runs by default.
	Role Role
	// Files are host paths that the image contains, bound at their container
	// paths before the node's own binds (e.g. the built binaries at
	// /usr/local/bin).
	Files []Bind
	// Env is the image's environment, below the node's env.
	Env map[string]string
	// HostFiles makes the image the machine itself, for test topologies:
	// its nodes see the machine's files (no binds, no fresh /run and /tmp)
	// and start from this process's environment.
	HostFiles bool
}

// Options configure a lab run.
type Options struct {
	// Images emulate the topology's images; a node whose image no entry
	// matches is refused by Deploy.
	Images []Image
	// Prefix starts every namespace name (default: "cl", six random hex
	// digits and "-"), so parallel or leftover runs cannot collide.
	Prefix string
	// StateDir receives logs and per-node scratch mounts (default: a new
	// temporary folder, removed by Destroy unless KeepState).
	StateDir  string
	KeepState bool
	// Logger gets progress at Info (default: discard).
	Logger *slog.Logger
}

// defaultPath is the PATH of Debian-based images.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// Lab is a deployed topology: one network namespace (with its own mount and
// UTS namespaces) per linux node, Linux bridges in a namespace that plays
// the container host, veth pairs for links.
type Lab struct {
	// Topo is the topology the lab runs.
	Topo *Topology

	opts Options
	log  *slog.Logger
	core *nslab.Lab
	host *nslab.Node // the container host: bridges and their ports

	mu        sync.Mutex
	nodes     map[string]*nodeRT
	replaced  int // files replaced so far, for unique names
	destroyed bool
}

// nodeRT is the runtime state of one linux node.
type nodeRT struct {
	node  *Node
	image Image
	core  *nslab.Node // the running incarnation; nil while stopped
	role  []*Proc
}

// Proc is a process the runner started inside a node.
type Proc = nslab.Proc

// Deploy runs the topology the way containerlab deploys it: every node is
// created with its sysctls and binds and started (its cmd, or the image's
// role), then the bridges and links are created, then every node's exec
// commands run in file order. On any error everything created so far is
// removed.
func Deploy(ctx context.Context, t *Topology, o Options) (_ *Lab, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Lab{Topo: t, opts: o, log: o.Logger, nodes: map[string]*nodeRT{}}
	if err := l.resolveImages(); err != nil {
		return nil, err
	}
	prefix := o.Prefix
	if prefix == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("random prefix: %w", err)
		}
		prefix = "cl" + hex.EncodeToString(b[:]) + "-"
	}
	if l.core, err = nslab.New(nslab.Options{Prefix: prefix, Dir: o.StateDir}); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Destroy())
		}
	}()
	start := time.Now()
	if l.host, err = l.core.AddNode(ctx, "_host", nslab.NodeOptions{}); err != nil {
		return nil, err
	}
	// Nodes start concurrently, as containerlab starts containers; links
	// come after every node exists, exec commands after every link.
	if err := l.eachNode(func(n *nodeRT) error { return l.createNode(ctx, n) }); err != nil {
		return nil, err
	}
	for _, n := range t.Nodes {
		if n.Kind == KindBridge {
			if err := l.host.AddBridge(ctx, n.Name); err != nil {
				return nil, err
			}
		}
	}
	for _, lk := range t.Links {
		if err := l.createLink(ctx, lk); err != nil {
			return nil, err
		}
	}
	if err := l.eachNode(func(n *nodeRT) error { return l.runExecs(ctx, n) }); err != nil {
		return nil, err
	}
	l.log.Info("lab deployed", "lab", t.Name, "nodes", len(t.Nodes), "links", len(t.Links), "took", time.Since(start).Round(time.Millisecond))
	return l, nil
}

// resolveImages finds every linux node's image emulation and checks its
// binds before anything is created.
func (l *Lab) resolveImages() error {
	for _, n := range l.Topo.Nodes {
		if n.Kind != KindLinux {
			continue
		}
		img, err := l.opts.image(n.Image)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if img.Role == RoleCommand && len(n.Cmd) == 0 {
			return fmt.Errorf("node %s: the runner knows no default command for image %s: set cmd", n.Name, n.Image)
		}
		if img.HostFiles && len(n.Binds) > 0 {
			return fmt.Errorf("node %s: image %s is this machine's own filesystem, which takes no binds", n.Name, n.Image)
		}
		for _, b := range append(slices.Clone(img.Files), n.Binds...) {
			if _, err := os.Stat(b.Source); err != nil {
				return fmt.Errorf("node %s: bind %s:%s: %w", n.Name, b.Source, b.Target, err)
			}
			if under(b.Target, "/run") || under(b.Target, "/tmp") {
				return fmt.Errorf("node %s: bind target %s: the runner gives each node fresh /run and /tmp and cannot bind below them", n.Name, b.Target)
			}
		}
		l.nodes[n.Name] = &nodeRT{node: n, image: img}
	}
	return nil
}

// eachNode runs f for every linux node concurrently and joins the errors.
func (l *Lab) eachNode(f func(*nodeRT) error) error {
	var wg sync.WaitGroup
	errs := make([]error, len(l.Topo.Nodes))
	for i, n := range l.Topo.Nodes {
		if n.Kind != KindLinux {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = f(l.nodes[n.Name])
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// under reports whether p is dir or below it.
func under(p, dir string) bool { return p == dir || strings.HasPrefix(p, dir+"/") }

// image finds the emulation of an image reference.
func (o Options) image(ref string) (Image, error) {
	repo := ref
	if i := strings.IndexByte(repo, '@'); i >= 0 {
		repo = repo[:i]
	}
	if i := strings.LastIndexByte(repo, ':'); i > strings.LastIndexByte(repo, '/') {
		repo = repo[:i]
	}
	var known []string
	for _, img := range o.Images {
		if img.Repository == repo {
			return img, nil
		}
		known = append(known, img.Repository)
	}
	return Image{}, fmt.Errorf("image %s: the runner does not know how to emulate it (known: %s)", ref, strings.Join(known, ", "))
}

// Prefix is the prefix of every namespace name of this lab.
func (l *Lab) Prefix() string { return l.core.Prefix() }

// StateDir is where the lab keeps its logs (logs/, one file per process).
func (l *Lab) StateDir() string { return l.core.Dir() }

// NetNS returns the network namespace name of a linux node (for ip -n or
// ip netns exec), or of the container host for a bridge node.
func (l *Lab) NetNS(node string) string {
	if n := l.Topo.Node(node); n != nil && n.Kind == KindBridge {
		return l.host.NetNS
	}
	return l.core.Prefix() + node
}

// node returns the runtime state of a running linux node.
func (l *Lab) node(name string) (*nodeRT, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.nodes[name]
	if n == nil {
		return nil, fmt.Errorf("no linux node %q in lab %s", name, l.Topo.Name)
	}
	if n.core == nil {
		return nil, fmt.Errorf("node %s is stopped", name)
	}
	return n, nil
}

// Node returns the lab core's handle on a running linux node: run commands,
// start processes, read its FIB, watch its route changes.
func (l *Lab) Node(name string) (*nslab.Node, error) {
	n, err := l.node(name)
	if err != nil {
		return nil, err
	}
	return n.core, nil
}

// env is the environment of processes in a node: the image's, then the
// node's, plus what a container runtime and containerlab set.
func (l *Lab) env(n *nodeRT) []string {
	m := map[string]string{"PATH": defaultPath, "HOME": "/root", "TERM": "dumb"}
	if n.image.HostFiles {
		for _, kv := range os.Environ() {
			k, v, _ := strings.Cut(kv, "=")
			m[k] = v
		}
	}
	for k, v := range n.image.Env {
		m[k] = v
	}
	for k, v := range n.node.Env {
		m[k] = v
	}
	m["HOSTNAME"] = n.node.Name
	m["CLAB_INTFS"] = strconv.Itoa(len(l.Topo.LinksOf(n.node.Name)))
	out := make([]string, 0, len(m))
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Exec runs argv inside a node, as `docker exec` would, and returns its
// standard output; the error carries the exit status and standard error.
func (l *Lab) Exec(ctx context.Context, node string, argv ...string) (string, error) {
	n, err := l.node(node)
	if err != nil {
		return "", err
	}
	return n.core.Exec(ctx, argv...)
}

// Start runs argv in the background inside a node; Destroy kills it.
func (l *Lab) Start(node, name string, argv ...string) (*Proc, error) {
	n, err := l.node(node)
	if err != nil {
		return nil, err
	}
	return n.core.Start(name, nil, argv...)
}

// PID returns the PID of a process that holds the node's namespaces:
// /proc/PID/net shows the node's network state (for example
// /proc/PID/net/ip_vs) without starting a process in it.
func (l *Lab) PID(node string) (int, error) {
	n, err := l.node(node)
	if err != nil {
		return 0, err
	}
	return n.core.PID(), nil
}

// Path returns where a path inside a node can be read from outside it
// (through the node's root in /proc), e.g. a bound file or /run/frr.
func (l *Lab) Path(node, p string) (string, error) {
	n, err := l.node(node)
	if err != nil {
		return "", err
	}
	return n.core.HostPath(p), nil
}

// Logs returns the output of a node's role processes (its cmd, or FRR's
// daemons), each under a header.
func (l *Lab) Logs(node string) string {
	var b strings.Builder
	for _, p := range l.Procs(node) {
		fmt.Fprintf(&b, "==> %s (pid %d) <==\n%s\n", p.Name, p.PID, p.Output())
	}
	return b.String()
}

// Procs returns the node's role processes (its cmd, or FRR's daemons).
func (l *Lab) Procs(node string) []*Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	if n := l.nodes[node]; n != nil {
		return slices.Clone(n.role)
	}
	return nil
}

// Destroy removes everything the lab created: node processes (killed by
// PID, including any other process left in a node's network namespace),
// the namespaces (which takes the links and bridges with them) and the
// state folder. It is safe to call more than once.
func (l *Lab) Destroy() error {
	l.mu.Lock()
	if l.destroyed || l.core == nil {
		l.mu.Unlock()
		return nil
	}
	l.destroyed = true
	l.mu.Unlock()
	err := l.core.Close()
	if !l.opts.KeepState {
		err = errors.Join(err, l.core.RemoveDir())
	}
	return err
}

// scratch is the folder for a node's private mounts.
func (l *Lab) scratch(node string) string { return filepath.Join(l.core.Dir(), "scratch", node) }
