package nslab

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// BIRDSpec says how to start BIRD in a node.
type BIRDSpec struct {
	// Dir, as the node sees it, holds the control socket (bird.ctl) and,
	// when Config is set, bird.conf. Empty: a private folder in the lab's
	// folder.
	Dir string
	// Config is the configuration text, written to Dir/bird.conf. When it
	// is empty, ConfigPath (as the node sees it) is used as it is.
	Config     string
	ConfigPath string
}

// BIRD is a running BIRD daemon.
type BIRD struct {
	node *Node
	// Dir is its folder and Socket its control socket, as the node sees
	// them; ConfigPath is the configuration it runs.
	Dir, Socket, ConfigPath string
	// Proc is the daemon, in the foreground.
	Proc *Proc
}

// StartBIRD checks the configuration with `bird -p`, starts BIRD in the
// foreground in the node and waits until birdc reports it up.
func StartBIRD(ctx context.Context, n *Node, spec BIRDSpec) (*BIRD, error) {
	b := &BIRD{node: n, Dir: spec.Dir, ConfigPath: spec.ConfigPath}
	if b.Dir == "" {
		dir, err := n.lab.Subdir("bird-"+n.Name, -1, -1)
		if err != nil {
			return nil, fmt.Errorf("BIRD folder: %w", err)
		}
		b.Dir = dir
	}
	if err := os.MkdirAll(n.HostPath(b.Dir), 0o755); err != nil {
		return nil, fmt.Errorf("BIRD folder: %w", err)
	}
	b.Socket = filepath.Join(b.Dir, "bird.ctl")
	if spec.Config != "" {
		b.ConfigPath = filepath.Join(b.Dir, "bird.conf")
		if err := os.WriteFile(n.HostPath(b.ConfigPath), []byte(spec.Config), 0o644); err != nil {
			return nil, fmt.Errorf("write BIRD configuration: %w", err)
		}
	}
	if b.ConfigPath == "" {
		return nil, fmt.Errorf("BIRD in %s: no configuration (set Config or ConfigPath)", n.Name)
	}
	if out, err := n.CombinedOutput(ctx, "bird", "-p", "-c", b.ConfigPath); err != nil {
		return nil, fmt.Errorf("BIRD in %s: bird -p rejected the configuration: %w\n%s", n.Name, err, out)
	}
	p, err := n.Start("bird", nil, "bird", "-f", "-c", b.ConfigPath, "-s", b.Socket)
	if err != nil {
		return nil, err
	}
	b.Proc = p
	if _, err := Wait(ctx, 10*time.Second, 20*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("bird exited: %s", Tail(p.Output(), 10))
		}
		out, err := b.Birdc(ctx, "show", "status")
		if err != nil || !strings.Contains(out, "Daemon is up") {
			return fmt.Errorf("BIRD not up yet: %v: %s", err, out)
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("start BIRD in %s: %w", n.Name, err)
	}
	return b, nil
}

// Birdc runs one birdc command through the control socket.
func (b *BIRD) Birdc(ctx context.Context, args ...string) (string, error) {
	return b.node.CombinedOutput(ctx, append([]string{"birdc", "-s", b.Socket}, args...)...)
}

// Configure replaces the configuration (when StartBIRD wrote it) and makes
// BIRD load it.
func (b *BIRD) Configure(ctx context.Context, config string) error {
	if err := os.WriteFile(b.node.HostPath(b.ConfigPath), []byte(config), 0o644); err != nil {
		return fmt.Errorf("write BIRD configuration: %w", err)
	}
	out, err := b.Birdc(ctx, "configure")
	if err != nil || !strings.Contains(out, "Reconfigured") {
		return fmt.Errorf("birdc configure in %s: %v: %s", b.node.Name, err, out)
	}
	return nil
}
