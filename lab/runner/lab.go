package runner

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
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

	opts   Options
	log    *slog.Logger
	prefix string
	dir    string
	hostNS string

	mu        sync.Mutex
	nodes     map[string]*nodeRT
	procs     []*Proc // every process started, for Destroy
	started   int     // processes started, for unique log names
	hostUp    bool
	destroyed bool
}

// nodeRT is the runtime state of one linux node.
type nodeRT struct {
	node   *Node
	image  Image
	ns     string
	holder *Proc
	role   []*Proc
	up     bool
}

// Deploy runs the topology the way containerlab deploys it: every node is
// created with its sysctls and binds and started (its cmd, or the image's
// role), then the bridges and links are created, then every node's exec
// commands run in file order. On any error everything created so far is
// removed.
func Deploy(ctx context.Context, t *Topology, o Options) (_ *Lab, err error) {
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	l := &Lab{Topo: t, opts: o, log: o.Logger, prefix: o.Prefix, nodes: map[string]*nodeRT{}}
	if l.prefix == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("random prefix: %w", err)
		}
		l.prefix = "cl" + hex.EncodeToString(b[:]) + "-"
	}
	l.hostNS = l.prefix + "_host"
	for _, n := range t.Nodes {
		if n.Kind != KindLinux {
			continue
		}
		img, err := o.image(n.Image)
		if err != nil {
			return nil, fmt.Errorf("node %s: %w", n.Name, err)
		}
		if img.Role == RoleCommand && len(n.Cmd) == 0 {
			return nil, fmt.Errorf("node %s: the runner knows no default command for image %s: set cmd", n.Name, n.Image)
		}
		for _, b := range append(slices.Clone(img.Files), n.Binds...) {
			if _, err := os.Stat(b.Source); err != nil {
				return nil, fmt.Errorf("node %s: bind %s:%s: %w", n.Name, b.Source, b.Target, err)
			}
			if under(b.Target, "/run") || under(b.Target, "/tmp") {
				return nil, fmt.Errorf("node %s: bind target %s: the runner gives each node fresh /run and /tmp and cannot bind below them", n.Name, b.Target)
			}
		}
		l.nodes[n.Name] = &nodeRT{node: n, image: img, ns: l.prefix + n.Name}
	}
	l.dir = o.StateDir
	if l.dir == "" {
		if l.dir, err = os.MkdirTemp("", "clab-runner-"); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{"logs", "scratch"} {
		if err := os.MkdirAll(filepath.Join(l.dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, l.Destroy())
		}
	}()
	start := time.Now()
	if err := l.run(ctx, "ip", "netns", "add", l.hostNS); err != nil {
		return nil, err
	}
	l.hostUp = true
	if _, err := l.run2(ctx, "ip", "-n", l.hostNS, "link", "set", "lo", "up"); err != nil {
		return nil, err
	}
	// Nodes start concurrently, as containerlab starts containers; links
	// come after every node exists, exec commands after every link.
	if err := l.eachNode(func(n *nodeRT) error { return l.createNode(ctx, n) }); err != nil {
		return nil, err
	}
	for _, n := range t.Nodes {
		if n.Kind == KindBridge {
			if err := l.run(ctx, "ip", "-n", l.hostNS, "link", "add", n.Name, "type", "bridge"); err != nil {
				return nil, err
			}
			if err := l.run(ctx, "ip", "-n", l.hostNS, "link", "set", n.Name, "up"); err != nil {
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
func (l *Lab) Prefix() string { return l.prefix }

// StateDir is where the lab keeps its logs.
func (l *Lab) StateDir() string { return l.dir }

// NetNS returns the network namespace name of a linux node (for ip -n or
// ip netns exec), or of the container host for a bridge node.
func (l *Lab) NetNS(node string) string {
	if n := l.Topo.Node(node); n != nil && n.Kind == KindBridge {
		return l.hostNS
	}
	return l.prefix + node
}

// node returns the runtime state of a running linux node.
func (l *Lab) node(name string) (*nodeRT, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := l.nodes[name]
	if n == nil {
		return nil, fmt.Errorf("no linux node %q in lab %s", name, l.Topo.Name)
	}
	if !n.up {
		return nil, fmt.Errorf("node %s is stopped", name)
	}
	return n, nil
}

// env is the environment of processes in a node: the image's, then the
// node's, plus what a container runtime and containerlab set.
func (l *Lab) env(n *nodeRT) []string {
	m := map[string]string{"PATH": defaultPath, "HOME": "/root", "TERM": "dumb"}
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

// nodeCmd builds a command that runs argv inside the node's namespaces.
func (l *Lab) nodeCmd(ctx context.Context, n *nodeRT, argv []string) *exec.Cmd {
	args := append([]string{"-t", strconv.Itoa(n.holder.PID), "-n", "-m", "-u", "-r", "-w", "--"}, argv...)
	var cmd *exec.Cmd
	if ctx != nil {
		cmd = exec.CommandContext(ctx, "nsenter", args...)
	} else {
		cmd = exec.Command("nsenter", args...)
	}
	cmd.Env = l.env(n)
	return cmd
}

// Exec runs argv inside a node, as `docker exec` would, and returns its
// standard output; the error carries the exit status and standard error.
func (l *Lab) Exec(ctx context.Context, node string, argv ...string) (string, error) {
	n, err := l.node(node)
	if err != nil {
		return "", err
	}
	cmd := l.nodeCmd(ctx, n, argv)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %s: %w: %s", node, strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String(), nil
}

// Start runs argv in the background inside a node; Destroy kills it.
func (l *Lab) Start(node, name string, argv ...string) (*Proc, error) {
	n, err := l.node(node)
	if err != nil {
		return nil, err
	}
	return l.startIn(n, name, argv)
}

func (l *Lab) startIn(n *nodeRT, name string, argv []string) (*Proc, error) {
	cmd := l.nodeCmd(nil, n, argv)
	full := n.node.Name + "/" + name
	l.mu.Lock()
	l.started++
	seq := l.started
	l.mu.Unlock()
	// One log file per process, never shared with an earlier process of
	// the same name.
	logPath := filepath.Join(l.dir, "logs", fmt.Sprintf("%03d-%s.log", seq, strings.ReplaceAll(full, "/", ".")))
	p, err := startProc(full, n.node.Name, logPath, cmd)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// PID returns the PID of a process that holds the node's namespaces:
// /proc/PID/net shows the node's network state (for example
// /proc/PID/net/ip_vs) without starting a process in it.
func (l *Lab) PID(node string) (int, error) {
	n, err := l.node(node)
	if err != nil {
		return 0, err
	}
	return n.holder.PID, nil
}

// Path returns where a path inside a node can be read from outside it
// (through the node's root in /proc), e.g. a bound file or /run/frr.
func (l *Lab) Path(node, p string) (string, error) {
	n, err := l.node(node)
	if err != nil {
		return "", err
	}
	return filepath.Join(fmt.Sprintf("/proc/%d/root", n.holder.PID), p), nil
}

// Logs returns the output of a node's role processes (its cmd, or FRR's
// daemons), each under a header.
func (l *Lab) Logs(node string) string {
	l.mu.Lock()
	n := l.nodes[node]
	var role []*Proc
	if n != nil {
		role = slices.Clone(n.role)
	}
	l.mu.Unlock()
	var b strings.Builder
	for _, p := range role {
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

// run runs a command in the root namespace and returns an error with its output.
func (l *Lab) run(ctx context.Context, argv ...string) error {
	_, err := l.run2(ctx, argv...)
	return err
}

func (l *Lab) run2(ctx context.Context, argv ...string) (string, error) {
	out, err := exec.CommandContext(ctx, argv[0], argv[1:]...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Destroy removes everything the lab created: node processes (killed by
// PID, including any other process left in a node's network namespace),
// the namespaces (which takes the links and bridges with them) and the
// state folder. It is safe to call more than once.
func (l *Lab) Destroy() error {
	l.mu.Lock()
	if l.destroyed {
		l.mu.Unlock()
		return nil
	}
	l.destroyed = true
	names := make([]string, 0, len(l.nodes))
	for name := range l.nodes {
		names = append(names, name)
	}
	l.mu.Unlock()
	var errs []error
	for _, name := range names {
		if err := l.stopNode(l.nodes[name]); err != nil {
			errs = append(errs, err)
		}
	}
	l.mu.Lock()
	procs := slices.Clone(l.procs)
	l.mu.Unlock()
	for _, p := range procs {
		p.Kill()
	}
	if l.hostUp {
		if out, err := exec.Command("ip", "netns", "del", l.hostNS).CombinedOutput(); err != nil {
			errs = append(errs, fmt.Errorf("delete namespace %s: %v: %s", l.hostNS, err, out))
		}
		l.hostUp = false
	}
	if l.dir != "" && !l.opts.KeepState && l.opts.StateDir == "" {
		if err := os.RemoveAll(l.dir); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// killNamespacePids kills, by PID, every process still in a network
// namespace (processes that exec commands left behind).
func killNamespacePids(ns string, except int) error {
	for range 5 {
		out, err := exec.Command("ip", "netns", "pids", ns).Output()
		if err != nil {
			return nil // namespace gone
		}
		var pids []int
		for _, f := range strings.Fields(string(out)) {
			if pid, err := strconv.Atoi(f); err == nil && pid != except && pid != os.Getpid() {
				pids = append(pids, pid)
			}
		}
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
