package nslab

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// FRRBin is where Debian's frr package (and FRR's image) installs the
// daemons.
const FRRBin = "/usr/lib/frr"

// FRRSpec says which FRR daemons to start in a node and how.
type FRRSpec struct {
	// Daemons in start order; zebra must come first.
	Daemons []FRRDaemon
	// Profile is frr_profile ("traditional", "datacenter"); empty: none.
	Profile string
	// Dir, as the node sees it, is where the daemons keep their vty
	// sockets, zserv socket and pid files; vtysh finds them there. Empty:
	// a private folder in the lab's folder (for nodes that share the
	// machine's files), with an empty configuration file per daemon.
	// "/run/frr" is FRR's default, for nodes with their own /run.
	Dir string
	// Boot loads /etc/frr/frr.conf of the node with vtysh -b once every
	// daemon answers, as FRR's image does.
	Boot bool
	// Config, if set, is applied through vtysh once every daemon answers
	// (after Boot).
	Config string
}

// FRRDaemon is one daemon and its extra command-line options.
type FRRDaemon struct {
	Name    string
	Options []string
}

// FRRDaemons returns specs for zebra plus the named daemons without options.
func FRRDaemons(names ...string) []FRRDaemon {
	out := []FRRDaemon{{Name: "zebra"}}
	for _, n := range names {
		if n != "zebra" {
			out = append(out, FRRDaemon{Name: n})
		}
	}
	return out
}

// FRR is a set of FRR daemons running in one node.
type FRR struct {
	node *Node
	// Dir is the daemons' folder as the node sees it; vtysh takes it as
	// --vty_socket.
	Dir string
	// Daemons are the running daemons by name ("zebra", "bgpd", ...).
	Daemons map[string]*Proc
	// Order is the daemons' start order.
	Order []string
}

// StartFRR starts FRR's daemons in the node as user frr, in the foreground
// (the lab owns their PIDs), each waited for until it answers on its vty
// socket (zebra must be up before the others connect to it), logging to
// their output. Then it loads the boot configuration and applies Config.
func StartFRR(ctx context.Context, n *Node, spec FRRSpec) (*FRR, error) {
	uid, gid, err := frrUser()
	if err != nil {
		return nil, err
	}
	f := &FRR{node: n, Dir: spec.Dir, Daemons: map[string]*Proc{}}
	private := f.Dir == ""
	if private {
		if f.Dir, err = n.lab.Subdir("frr-"+n.Name, uid, gid); err != nil {
			return nil, fmt.Errorf("FRR folder: %w", err)
		}
	}
	hostDir := n.HostPath(f.Dir)
	if err := os.MkdirAll(hostDir, 0o755); err != nil {
		return nil, fmt.Errorf("FRR folder: %w", err)
	}
	if err := os.Chown(hostDir, uid, gid); err != nil {
		return nil, fmt.Errorf("FRR folder: %w", err)
	}
	for _, d := range spec.Daemons {
		argv, err := f.daemonArgv(d, spec.Profile, private, uid, gid)
		if err != nil {
			return nil, err
		}
		if err := f.startDaemon(ctx, d.Name, argv); err != nil {
			return nil, err
		}
	}
	if spec.Boot {
		out, err := n.CombinedOutput(ctx, "vtysh", "--vty_socket", f.Dir, "-b")
		if err != nil {
			return nil, fmt.Errorf("FRR in %s: vtysh -b (load /etc/frr/frr.conf): %w", n.Name, err)
		}
		if strings.Contains(out, "% ") {
			return nil, fmt.Errorf("FRR in %s: vtysh -b reported configuration errors:\n%s", n.Name, out)
		}
	}
	if spec.Config != "" {
		if err := f.Configure(ctx, spec.Config); err != nil {
			return nil, err
		}
	}
	return f, nil
}

// frrUser finds the frr user and group.
func frrUser() (uid, gid int, err error) {
	u, err := user.Lookup("frr")
	if err != nil {
		return 0, 0, fmt.Errorf("FRR needs the frr user (apt-get install frr): %w", err)
	}
	uid, _ = strconv.Atoi(u.Uid)
	gid, _ = strconv.Atoi(u.Gid)
	return uid, gid, nil
}

// daemonArgv is one daemon's command line. A daemon that was stopped may
// leave its vty socket and pid file behind: they are removed first, or the
// wait below would hand vtysh a dead daemon, which it skips without an
// error.
func (f *FRR) daemonArgv(d FRRDaemon, profile string, private bool, uid, gid int) ([]string, error) {
	hostDir := f.node.HostPath(f.Dir)
	for _, ext := range []string{".vty", ".pid"} {
		if err := os.Remove(filepath.Join(hostDir, d.Name+ext)); err != nil && !os.IsNotExist(err) {
			return nil, err
		}
	}
	argv := append([]string{filepath.Join(FRRBin, d.Name)}, d.Options...)
	if profile != "" {
		argv = append(argv, "-F", profile)
	}
	argv = append(argv, "--vty_socket", f.Dir,
		"-i", filepath.Join(f.Dir, d.Name+".pid"),
		"-z", filepath.Join(f.Dir, "zserv.api"),
		"-u", "frr", "-g", "frr", "--log", "stdout")
	if d.Name == "bfdd" {
		argv = append(argv, "--bfdctl", filepath.Join(f.Dir, "bfdd.sock"))
	}
	if private {
		// An empty configuration of its own, so the daemon does not read
		// the machine's /etc/frr.
		conf := filepath.Join(hostDir, d.Name+".conf")
		if err := os.WriteFile(conf, nil, 0o640); err != nil {
			return nil, err
		}
		if err := os.Chown(conf, uid, gid); err != nil {
			return nil, err
		}
		argv = append(argv, "-f", filepath.Join(f.Dir, d.Name+".conf"))
	}
	return argv, nil
}

// startDaemon starts one daemon and waits until its vty socket answers.
func (f *FRR) startDaemon(ctx context.Context, name string, argv []string) error {
	p, err := f.node.Start(name, nil, argv...)
	if err != nil {
		return err
	}
	f.Daemons[name] = p
	f.Order = append(f.Order, name)
	vty := filepath.Join(f.node.HostPath(f.Dir), name+".vty")
	if _, err := Wait(ctx, 30*time.Second, 20*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("%s exited: %s", name, Tail(p.Output(), 10))
		}
		c, err := net.Dial("unix", vty)
		if err != nil {
			return fmt.Errorf("%s does not answer on its vty socket yet: %w", name, err)
		}
		c.Close()
		return nil
	}); err != nil {
		return fmt.Errorf("start FRR's %s in %s: %w", name, f.node.Name, err)
	}
	return nil
}

// Procs returns the daemons in start order.
func (f *FRR) Procs() []*Proc {
	out := make([]*Proc, 0, len(f.Order))
	for _, name := range f.Order {
		out = append(out, f.Daemons[name])
	}
	return out
}

// PID returns the PID of a daemon, or 0 when it is not running.
func (f *FRR) PID(daemon string) int {
	if p := f.Daemons[daemon]; p != nil && !p.Exited() {
		return p.PID
	}
	return 0
}

// Configure applies configuration commands (frr.conf syntax) to the running
// daemons through vtysh -f.
func (f *FRR) Configure(ctx context.Context, config string) error {
	name := fmt.Sprintf("apply-%d.conf", time.Now().UnixNano())
	if err := os.WriteFile(filepath.Join(f.node.HostPath(f.Dir), name), []byte(config), 0o644); err != nil {
		return fmt.Errorf("write FRR configuration: %w", err)
	}
	path := filepath.Join(f.Dir, name)
	out, err := f.node.CombinedOutput(ctx, "vtysh", "--vty_socket", f.Dir, "-f", path)
	if err != nil || strings.Contains(out, "% ") {
		return fmt.Errorf("vtysh -f %s in %s: %v\n%s\nconfiguration:\n%s", path, f.node.Name, err, out, config)
	}
	return nil
}

// Vtysh runs one or more vtysh commands and returns the output. A vtysh
// that cannot reach the daemons is retried a few times: on a loaded machine
// a busy daemon's vty socket occasionally refuses a connection, which is
// not what a test asserts on.
func (f *FRR) Vtysh(ctx context.Context, commands ...string) (string, error) {
	argv := []string{"vtysh", "--vty_socket", f.Dir}
	for _, c := range commands {
		argv = append(argv, "-c", c)
	}
	var out []byte
	var err error
	for attempt := 0; attempt < 3; attempt++ {
		out, err = f.node.Command(ctx, argv).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "failed to connect") {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err != nil {
		return string(out), fmt.Errorf("vtysh %q in %s: %w: %s", commands, f.node.Name, err, out)
	}
	return string(out), nil
}

// VtyshJSON runs a "show ... json" command and decodes its output into v.
func (f *FRR) VtyshJSON(ctx context.Context, command string, v any) error {
	out, err := f.Vtysh(ctx, command)
	if err != nil {
		return err
	}
	if err := json.Unmarshal([]byte(out), v); err != nil {
		return fmt.Errorf("decode %q output: %w: %s", command, err, Tail(out, 10))
	}
	return nil
}

// Stop ends the daemons in reverse start order, each with SIGTERM and
// SIGKILL after grace.
func (f *FRR) Stop(grace time.Duration) {
	for i := len(f.Order) - 1; i >= 0; i-- {
		f.Daemons[f.Order[i]].Stop(grace)
	}
}
