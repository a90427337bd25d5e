package runner

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"time"
)

// holderReady is the line the holder prints once the node's mounts are in
// place.
const holderReady = "CLAB-RUNNER-READY"

// createNode makes a linux node exist and start: its network namespace, a
// holder process that owns its mount and UTS namespaces (hostname, binds,
// fresh /run and /tmp), its sysctls, then its role.
func (l *Lab) createNode(ctx context.Context, n *nodeRT) error {
	start := time.Now()
	if err := l.run(ctx, "ip", "netns", "add", n.ns); err != nil {
		return err
	}
	l.mu.Lock()
	n.up = true // from here on, stopNode must clean up
	l.mu.Unlock()
	if err := l.run(ctx, "ip", "-n", n.ns, "link", "set", "lo", "up"); err != nil {
		return err
	}
	scratch := filepath.Join(l.dir, "scratch", n.node.Name)
	if err := os.MkdirAll(scratch, 0o755); err != nil {
		return err
	}
	script, err := holderScript(n.node.Name, scratch, append(slices.Clone(n.image.Files), n.node.Binds...), pathExists)
	if err != nil {
		return fmt.Errorf("node %s: %w", n.node.Name, err)
	}
	// ip netns exec enters the network namespace and remounts /sys for it;
	// unshare then gives the node private mount and UTS namespaces, which
	// every later nsenter joins.
	cmd := exec.Command("ip", "netns", "exec", n.ns, "unshare", "--mount", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", script)
	cmd.Dir = "/"
	holder, err := startHolder(n.node.Name, cmd)
	if err != nil {
		return err
	}
	l.mu.Lock()
	n.holder = holder
	l.procs = append(l.procs, holder)
	l.mu.Unlock()
	// For people poking at a running lab: nsenter -t $(cat FILE) -a.
	if err := os.WriteFile(filepath.Join(l.dir, n.node.Name+".pid"), []byte(fmt.Sprintf("%d\n", holder.PID)), 0o644); err != nil {
		return err
	}
	if len(n.node.Sysctls) > 0 {
		keys := make([]string, 0, len(n.node.Sysctls))
		for k := range n.node.Sysctls {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		argv := []string{"sysctl", "-q", "-w"}
		for _, k := range keys {
			argv = append(argv, k+"="+n.node.Sysctls[k])
		}
		if _, err := l.execIn(ctx, n, argv); err != nil {
			return fmt.Errorf("sysctls: %w", err)
		}
	}
	if err := l.startRole(ctx, n); err != nil {
		return fmt.Errorf("node %s: %w", n.node.Name, err)
	}
	l.log.Info("node started", "node", n.node.Name, "image", n.node.Image, "took", time.Since(start).Round(time.Millisecond))
	return nil
}

// execIn runs argv in a node whose state the caller already holds.
func (l *Lab) execIn(ctx context.Context, n *nodeRT, argv []string) (string, error) {
	cmd := l.nodeCmd(ctx, n, argv)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s: %s: %w: %s", n.node.Name, strings.Join(argv, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// startHolder starts the holder and waits for its ready line.
func startHolder(node string, cmd *exec.Cmd) (*Proc, error) {
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("node %s: start holder: %w", node, err)
	}
	p := &Proc{Name: node + "/holder", Node: node, PID: cmd.Process.Pid, LogPath: os.DevNull, cmd: cmd, done: make(chan struct{})}
	ready := make(chan error, 1)
	var lines []string
	go func() {
		sc := bufio.NewScanner(pr)
		ok := false
		for sc.Scan() {
			if !ok && sc.Text() == holderReady {
				ok = true
				ready <- nil
				continue
			}
			if !ok {
				lines = append(lines, sc.Text())
			}
		}
		if !ok {
			ready <- fmt.Errorf("node %s: the namespace holder failed: %s", node, strings.Join(lines, "; "))
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		p.err = cmd.Wait()
		pw.Close()
		close(p.done)
	}()
	select {
	case err := <-ready:
		if err != nil {
			p.Kill()
			return nil, err
		}
		return p, nil
	case <-time.After(60 * time.Second):
		p.Kill()
		return nil, fmt.Errorf("node %s: the namespace holder did not get ready in 60 s", node)
	}
}

func pathExists(p string) (exists, isDir bool) {
	st, err := os.Stat(p)
	if err != nil {
		return false, false
	}
	return true, st.IsDir()
}

// holderScript is the shell script that prepares a node's mount namespace:
// a private scratch tmpfs, a writable overlay over each existing folder in
// which a bind target must be created (so nothing is written outside the
// node), the binds (read-only where asked), then fresh /run and /tmp, like a
// container's. It prints the ready line and then sleeps, holding the
// namespaces.
func holderScript(node, scratch string, binds []Bind, exists func(string) (bool, bool)) (string, error) {
	q := shQuote
	var b strings.Builder
	b.WriteString("set -eu\n")
	fmt.Fprintf(&b, "hostname %s\n", q(node))
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
	fmt.Fprintf(&b, "echo %s\nexec sleep infinity\n", holderReady)
	return b.String(), nil
}

// shQuote quotes s for a POSIX shell.
func shQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// startRole starts what the node runs: its cmd, or the image's role.
func (l *Lab) startRole(ctx context.Context, n *nodeRT) error {
	if len(n.node.Cmd) > 0 {
		p, err := l.startIn(n, "cmd", n.node.Cmd)
		if err != nil {
			return err
		}
		l.mu.Lock()
		n.role = []*Proc{p}
		l.mu.Unlock()
		return nil
	}
	switch n.image.Role {
	case RoleFRR:
		return l.startFRR(ctx, n)
	}
	return fmt.Errorf("image %s has no default command known to the runner: set cmd", n.node.Image)
}

// runExecs runs the node's exec commands in order; any failure is an error,
// as in containerlab's deploy.
func (l *Lab) runExecs(ctx context.Context, n *nodeRT) error {
	for _, argv := range n.node.Exec {
		if _, err := l.execIn(ctx, n, argv); err != nil {
			return fmt.Errorf("exec: %w", err)
		}
	}
	return nil
}

// stopNode kills the node's processes by PID, then any other process left
// in its network namespace, then deletes the namespace. The holder goes
// last, taking the mount and UTS namespaces with it.
func (l *Lab) stopNode(n *nodeRT) error {
	l.mu.Lock()
	if !n.up {
		l.mu.Unlock()
		return nil
	}
	n.up = false
	var mine []*Proc
	for _, p := range l.procs {
		if p.Node == n.node.Name && p != n.holder {
			mine = append(mine, p)
		}
	}
	holder := n.holder
	n.role = nil
	l.mu.Unlock()
	for _, p := range mine {
		p.Kill()
	}
	var errs []error
	holderPID := 0
	if holder != nil {
		holderPID = holder.PID
	}
	if err := killNamespacePids(n.ns, holderPID); err != nil {
		errs = append(errs, err)
	}
	if holder != nil {
		holder.Kill()
	}
	// The kernel tears a deleted namespace down asynchronously; deleting
	// the node's link ends first makes their peers vanish before StopNode
	// returns, as a dead container's do.
	for _, lk := range l.Topo.LinksOf(n.node.Name) {
		for _, e := range []Endpoint{lk.A, lk.B} {
			if e.Node == n.node.Name {
				exec.Command("ip", "-n", n.ns, "link", "del", e.Interface).Run()
			}
		}
	}
	if out, err := exec.Command("ip", "netns", "del", n.ns).CombinedOutput(); err != nil {
		errs = append(errs, fmt.Errorf("delete namespace %s: %v: %s", n.ns, err, out))
	}
	return errors.Join(errs...)
}

// StopNode emulates a container that dies (docker kill): every process of
// the node is killed and its network namespace deleted, which removes the
// veth pairs of its links on both ends.
func (l *Lab) StopNode(name string) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	return l.stopNode(n)
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
	if n.up {
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
	n, err := l.node(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	role := slices.Clone(n.role)
	n.role = nil
	l.mu.Unlock()
	for _, p := range slices.Backward(role) {
		p.Stop(grace)
	}
	return l.startRole(ctx, n)
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
	out, err := exec.Command("ip", "netns", "pids", n.ns).Output()
	if err != nil {
		return fmt.Errorf("list processes of %s: %w", name, err)
	}
	count := 0
	for _, f := range strings.Fields(string(out)) {
		var pid int
		if _, err := fmt.Sscan(f, &pid); err != nil || pid == n.holder.PID {
			continue
		}
		if err := syscall.Kill(pid, sig); err == nil {
			count++
		}
	}
	if count == 0 {
		return fmt.Errorf("node %s has no process to signal", name)
	}
	return nil
}
