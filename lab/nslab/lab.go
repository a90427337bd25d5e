package nslab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Options configure a lab.
type Options struct {
	// Prefix starts every namespace name (default: "nl", eight random hex
	// digits and "-"), so parallel or leftover runs cannot collide.
	Prefix string
	// Dir receives the processes' logs and the nodes' files (default: a
	// new temporary folder, which RemoveDir deletes).
	Dir string
}

// Lab owns the nodes, processes and folder of one run.
type Lab struct {
	prefix string
	dir    string
	ownDir bool // dir was created by New

	mu     sync.Mutex
	nodes  []*Node
	procs  []*Proc
	seq    int // processes started, for unique log names
	closed bool
}

// New creates an empty lab: a folder (world-traversable, so daemons running
// as another user, such as FRR's, can use it) with a logs folder inside.
func New(o Options) (*Lab, error) {
	l := &Lab{prefix: o.Prefix, dir: o.Dir}
	if l.prefix == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return nil, fmt.Errorf("random namespace prefix: %w", err)
		}
		l.prefix = "nl" + hex.EncodeToString(b[:]) + "-"
	}
	if l.dir == "" {
		dir, err := os.MkdirTemp("", "nslab-"+l.prefix)
		if err != nil {
			return nil, fmt.Errorf("create the lab folder: %w", err)
		}
		l.dir, l.ownDir = dir, true
	}
	if err := os.MkdirAll(filepath.Join(l.dir, "logs"), 0o755); err != nil {
		return nil, fmt.Errorf("create the lab folder: %w", err)
	}
	if err := os.Chmod(l.dir, 0o755); err != nil {
		return nil, fmt.Errorf("open the lab folder %s to other users: %w", l.dir, err)
	}
	return l, nil
}

// Prefix is the prefix of every namespace name of this lab.
func (l *Lab) Prefix() string { return l.prefix }

// Dir is the lab's folder: logs/ has one file per process started.
func (l *Lab) Dir() string { return l.dir }

// Subdir creates a folder in the lab's folder, owned by uid:gid unless they
// are -1, and returns its path.
func (l *Lab) Subdir(name string, uid, gid int) (string, error) {
	dir := filepath.Join(l.dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if uid != -1 {
		if err := os.Chown(dir, uid, gid); err != nil {
			return "", err
		}
	}
	return dir, nil
}

// Procs returns every process started so far, in start order.
func (l *Lab) Procs() []*Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	return slices.Clone(l.procs)
}

// startProc starts cmd as a process of node n, logged under name.
func (l *Lab) startProc(n *Node, name string, cmd *exec.Cmd) (*Proc, error) {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("start %s: the lab is closed", name)
	}
	l.seq++
	seq := l.seq
	l.mu.Unlock()
	// One log file per process, never shared with an earlier process of
	// the same name.
	logPath := filepath.Join(l.dir, "logs", fmt.Sprintf("%03d-%s.log", seq, strings.ReplaceAll(name, "/", ".")))
	p, err := startProc(name, n, logPath, cmd)
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	l.procs = append(l.procs, p)
	l.mu.Unlock()
	return p, nil
}

// Close removes what the lab created: every node (its processes killed by
// PID, then any other process left in its network namespace, then the
// namespace), then any process left. The folder stays (RemoveDir). It is
// safe to call more than once.
func (l *Lab) Close() error {
	l.mu.Lock()
	l.closed = true
	nodes := slices.Clone(l.nodes)
	l.mu.Unlock()
	var errs []error
	for _, n := range slices.Backward(nodes) {
		if err := n.Remove(); err != nil {
			errs = append(errs, err)
		}
	}
	for _, p := range slices.Backward(l.Procs()) {
		p.Kill()
	}
	return errors.Join(errs...)
}

// RemoveDir deletes the lab's folder if New created it.
func (l *Lab) RemoveDir() error {
	if !l.ownDir {
		return nil
	}
	if err := os.RemoveAll(l.dir); err != nil {
		return fmt.Errorf("remove the lab folder: %w", err)
	}
	return nil
}

// run runs a command in the root namespace and returns its standard
// output; the error carries its standard error.
func run(ctx context.Context, argv ...string) (string, error) {
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(argv, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
