package runner

import (
	"context"
	"fmt"
	"slices"
	"syscall"
	"time"
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
