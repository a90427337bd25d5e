package runner

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"time"

	"github.com/anycast-director/director/lab/nslab"
)

// Stop says how Restart ends a node's role processes.
type Stop struct {
	// Signal ends them: SIGTERM (the default) gives each up to Grace to
	// exit before SIGKILL; SIGKILL kills them at once, like a crash.
	Signal syscall.Signal
	Grace  time.Duration
}

// Restart ends what the node runs (its cmd, or its image's daemons) as stop
// says, then starts it again in place with the same command line: the node
// keeps its namespaces, links, addresses and files (configuration, state
// folders, IPVS tables), as a process restarted inside a running container
// does. Replace a binary first (ReplaceFile) to restart into another build.
func (l *Lab) Restart(ctx context.Context, name string, stop Stop) error {
	if err := l.StopRole(name, stop); err != nil {
		return err
	}
	return l.StartRole(ctx, name)
}

// StopRole ends what the node runs, as stop says, in reverse start order,
// and returns once every process has exited. The node stays up.
func (l *Lab) StopRole(name string, stop Stop) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	l.mu.Lock()
	role := slices.Clone(n.role)
	n.role = nil
	l.mu.Unlock()
	for _, p := range slices.Backward(role) {
		if stop.Signal == syscall.SIGKILL {
			p.Kill()
			continue
		}
		grace := stop.Grace
		if grace <= 0 {
			grace = 10 * time.Second
		}
		p.Stop(grace)
	}
	return nil
}

// StartRole starts what the node runs (its cmd, or its image's daemons)
// after StopRole, or after it exited by itself.
func (l *Lab) StartRole(ctx context.Context, name string) error {
	n, err := l.node(name)
	if err != nil {
		return err
	}
	for _, p := range l.Procs(name) {
		if !p.Exited() {
			return fmt.Errorf("node %s: %s (pid %d) still runs: stop it first", name, p.Name, p.PID)
		}
	}
	return l.startRole(ctx, n)
}

// SignalRole sends sig to every running role process of the node (SIGHUP
// to reload, SIGSTOP/SIGCONT to freeze and thaw the daemon alone).
func (l *Lab) SignalRole(name string, sig syscall.Signal) error {
	if _, err := l.node(name); err != nil {
		return err
	}
	sent := 0
	for _, p := range l.Procs(name) {
		if p.Exited() {
			continue
		}
		if err := p.Signal(sig); err != nil {
			return err
		}
		sent++
	}
	if sent == 0 {
		return fmt.Errorf("node %s runs no role process to signal", name)
	}
	return nil
}

// WriteFile replaces the contents of a file inside a node in place (the
// same inode, so a file bound into the node changes at its source too, as a
// bind-mounted configuration file does under containerlab).
func (l *Lab) WriteFile(node, path string, data []byte) error {
	n, err := l.node(node)
	if err != nil {
		return err
	}
	if err := os.WriteFile(n.core.HostPath(path), data, 0o644); err != nil {
		return fmt.Errorf("node %s: write %s: %w", node, path, err)
	}
	return nil
}

// Reconfigure writes a node's configuration file (WriteFile) and sends its
// role processes SIGHUP: an operator's edit-and-reload.
func (l *Lab) Reconfigure(node, path string, data []byte) error {
	if err := l.WriteFile(node, path, data); err != nil {
		return err
	}
	return l.SignalRole(node, syscall.SIGHUP)
}

// ReplaceFile makes the file at path inside a node show the host file src
// from now on, as installing a new package version would: src is copied
// into the node and bind-mounted over path in the node's mount namespace,
// so the node alone sees it and processes already running keep the file
// they opened. Restart the role afterwards to run a replaced binary (an
// upgrade, or a downgrade with the older build as src).
func (l *Lab) ReplaceFile(ctx context.Context, node, path, src string) error {
	n, err := l.node(node)
	if err != nil {
		return err
	}
	// Somewhere the node sees and only this lab writes: its own /tmp, or,
	// for a node on the machine's files, the lab's folder.
	dir := "/tmp/.lab-files"
	if n.image.HostFiles {
		dir = filepath.Join(l.core.Dir(), "files", node)
	}
	l.mu.Lock()
	l.replaced++
	inside := filepath.Join(dir, fmt.Sprintf("%03d-%s", l.replaced, filepath.Base(path)))
	l.mu.Unlock()
	if err := copyFile(src, n.core.HostPath(inside)); err != nil {
		return fmt.Errorf("node %s: replace %s: %w", node, path, err)
	}
	if _, err := n.core.CombinedOutput(ctx, "mount", "--bind", inside, path); err != nil {
		return fmt.Errorf("node %s: replace %s: %w", node, path, err)
	}
	return nil
}

// copyFile copies src to dst (creating dst's folder) with src's mode.
func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		return err
	}
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, st.Mode().Perm())
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

// RouteChanges runs action and returns the changes of prefix's route in a
// node (`ip monitor route`, started before the action and read to the end
// of what it caused), with action's error: "the router's ECMP route changed
// 0 times while d1 restarted".
func (l *Lab) RouteChanges(ctx context.Context, node, prefix string, action func() error) ([]nslab.RouteEvent, error) {
	n, err := l.node(node)
	if err != nil {
		return nil, err
	}
	return nslab.CountRouteChanges(ctx, n.core, prefix, action)
}
