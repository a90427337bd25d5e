package runner

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/anycast-director/director/lab/nslab"
)

// createNode makes a linux node exist and start: its network namespace, a
// holder process that owns its mount and UTS namespaces (hostname, binds,
// fresh /run and /tmp), its sysctls, then its role.
func (l *Lab) createNode(ctx context.Context, n *nodeRT) error {
	start := time.Now()
	setup := ""
	if !n.image.HostFiles {
		scratch := l.scratch(n.node.Name)
		if err := os.MkdirAll(scratch, 0o755); err != nil {
			return err
		}
		var err error
		setup, err = holderSetup(scratch, append(slices.Clone(n.image.Files), n.node.Binds...), pathExists)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.node.Name, err)
		}
	}
	c, err := l.core.AddNode(ctx, n.node.Name, nslab.NodeOptions{Isolated: true, Setup: setup, Env: l.env(n)})
	if err != nil {
		return err
	}
	l.mu.Lock()
	n.core = c
	l.mu.Unlock()
	if err := c.Sysctls(ctx, n.node.Sysctls); err != nil {
		return fmt.Errorf("node %s: sysctls: %w", n.node.Name, err)
	}
	if err := l.startRole(ctx, n); err != nil {
		return fmt.Errorf("node %s: %w", n.node.Name, err)
	}
	l.log.Info("node started", "node", n.node.Name, "image", n.node.Image, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func pathExists(p string) (exists, isDir bool) {
	st, err := os.Stat(p)
	if err != nil {
		return false, false
	}
	return true, st.IsDir()
}

// holderSetup is the shell script that prepares a node's mount namespace:
// a private scratch tmpfs, a writable overlay over each existing folder in
// which a bind target must be created (so nothing is written outside the
// node), the binds (read-only where asked), then fresh /run and /tmp, like a
// container's.
func holderSetup(scratch string, binds []Bind, exists func(string) (bool, bool)) (string, error) {
	q := nslab.ShellQuote
	var b strings.Builder
	fmt.Fprintf(&b, "mount -t tmpfs -o mode=0700 clab-scratch %s\n", q(scratch))
	var overlays []string
	for _, bd := range binds {
		srcExists, srcDir := exists(bd.Source)
		if !srcExists {
			return "", fmt.Errorf("bind source %s does not exist", bd.Source)
		}
		if ok, isDir := exists(bd.Target); ok {
			if isDir != srcDir {
				return "", fmt.Errorf("bind %s:%s: one is a folder and the other is not", bd.Source, bd.Target)
			}
			continue
		}
		anc := filepath.Dir(bd.Target)
		for {
			if ok, _ := exists(anc); ok {
				break
			}
			anc = filepath.Dir(anc)
		}
		if anc == "/" {
			return "", fmt.Errorf("bind target %s: the runner cannot create top-level folders; bind into an existing one", bd.Target)
		}
		covered := false
		for _, o := range overlays {
			if under(anc, o) {
				covered = true
			}
		}
		if !covered {
			overlays = append(overlays, anc)
			i := len(overlays)
			fmt.Fprintf(&b, "mkdir -p %s/o%d/u %s/o%d/w\n", q(scratch), i, q(scratch), i)
			fmt.Fprintf(&b, "mount -t overlay clab-overlay -o lowerdir=%s,upperdir=%s/o%d/u,workdir=%s/o%d/w %s\n",
				q(anc), q(scratch), i, q(scratch), i, q(anc))
		}
	}
	for _, bd := range binds {
		_, srcDir := exists(bd.Source)
		if srcDir {
			fmt.Fprintf(&b, "mkdir -p %s\n", q(bd.Target))
		} else {
			fmt.Fprintf(&b, "mkdir -p %s\n[ -e %s ] || : > %s\n", q(filepath.Dir(bd.Target)), q(bd.Target), q(bd.Target))
		}
		fmt.Fprintf(&b, "mount --bind %s %s\n", q(bd.Source), q(bd.Target))
		if bd.ReadOnly {
			fmt.Fprintf(&b, "mount -o remount,bind,ro %s\n", q(bd.Target))
		}
	}
	b.WriteString("mount -t tmpfs -o mode=0755 clab-run /run\nmkdir -p /run/lock\n")
	b.WriteString("mount -t tmpfs -o mode=1777 clab-tmp /tmp\n")
	return b.String(), nil
}

// startRole starts what the node runs: its cmd, or the image's role.
func (l *Lab) startRole(ctx context.Context, n *nodeRT) error {
	var role []*Proc
	switch {
	case len(n.node.Cmd) > 0:
		p, err := n.core.Start("cmd", nil, n.node.Cmd...)
		if err != nil {
			return err
		}
		role = []*Proc{p}
	case n.image.Role == RoleFRR:
		f, err := l.startFRR(ctx, n)
		if err != nil {
			return err
		}
		role = f.Procs()
	case n.image.Role == RoleBIRD:
		b, err := nslab.StartBIRD(ctx, n.core, nslab.BIRDSpec{Dir: "/run/bird", ConfigPath: "/etc/bird/bird.conf"})
		if err != nil {
			return fmt.Errorf("BIRD image: %w", err)
		}
		role = []*Proc{b.Proc}
	case n.image.Role == RoleIdle:
	default:
		return fmt.Errorf("image %s has no default command known to the runner: set cmd", n.node.Image)
	}
	l.mu.Lock()
	n.role = role
	l.mu.Unlock()
	return nil
}

// runExecs runs the node's exec commands in order; any failure is an error,
// as in containerlab's deploy.
func (l *Lab) runExecs(ctx context.Context, n *nodeRT) error {
	for _, argv := range n.node.Exec {
		if _, err := n.core.CombinedOutput(ctx, argv...); err != nil {
			return fmt.Errorf("exec: %w", err)
		}
	}
	return nil
}

// StopNode emulates a container that dies (docker kill): every process of
// the node is killed and its network namespace deleted, which removes the
// veth pairs of its links on both ends.
func (l *Lab) StopNode(name string) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	c := n.core
	n.core, n.role = nil, nil
	l.mu.Unlock()
	return c.Remove()
}

// StartNode brings a stopped node back as a fresh container: new
// namespaces, sysctls, binds and role, its links re-created (the peer ends
// get new, unconfigured interfaces; bridge ports rejoin their bridge), and
// its exec commands run again.
func (l *Lab) StartNode(ctx context.Context, name string) error {
	l.mu.Lock()
	n := l.nodes[name]
	l.mu.Unlock()
	if n == nil {
		return fmt.Errorf("no linux node %q", name)
	}
	if n.core != nil {
		return fmt.Errorf("node %s is running", name)
	}
	if err := l.createNode(ctx, n); err != nil {
		return err
	}
	for _, lk := range l.Topo.LinksOf(name) {
		if err := l.createLink(ctx, lk); err != nil {
			return err
		}
	}
	return l.runExecs(ctx, n)
}

// RestartRole restarts what the node runs (its cmd, or FRR's daemons) in
// place, keeping its namespaces, links and addresses: a software restart,
// like `frrinit.sh restart` inside the container. Processes get SIGTERM and
// are killed after grace.
func (l *Lab) RestartRole(ctx context.Context, name string, grace time.Duration) error {
	return l.Restart(ctx, name, Stop{Grace: grace})
}

// Pause freezes every process of the node (SIGSTOP), as `docker pause`
// does; Unpause resumes them.
func (l *Lab) Pause(name string) error { return l.signalAll(name, syscall.SIGSTOP) }

// Unpause resumes the processes Pause froze.
func (l *Lab) Unpause(name string) error { return l.signalAll(name, syscall.SIGCONT) }

func (l *Lab) signalAll(name string, sig syscall.Signal) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	count, err := n.core.SignalAll(sig)
	if err != nil {
		return err
	}
	if count == 0 {
		return fmt.Errorf("node %s has no process to signal", name)
	}
	return nil
}
