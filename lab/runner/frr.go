package runner

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// frrDir is where FRR's daemons live in Debian's package and in FRR's image.
const frrDir = "/usr/lib/frr"

// frrOrder is the order in which FRR's frrcommon.sh starts daemons; zebra
// (and staticd, and mgmtd where it exists) always run.
func frrOrder() []string {
	return []string{"zebra", "mgmtd", "bgpd", "ripd", "ripngd", "ospfd", "ospf6d", "isisd", "babeld",
		"pimd", "pim6d", "ldpd", "nhrpd", "eigrpd", "sharpd", "pbrd", "staticd", "bfdd", "fabricd", "vrrpd", "pathd"}
}

// FRRDaemons is what an FRR daemons file enables.
type FRRDaemons struct {
	// Daemons to start, in start order, each with its command-line options.
	Daemons []FRRDaemon
	// Profile is frr_profile ("traditional", "datacenter"), if set.
	Profile string
}

// FRRDaemon is one daemon and its options.
type FRRDaemon struct {
	Name    string
	Options []string
}

// ParseFRRDaemons reads an FRR daemons file (shell assignments such as
// bgpd=yes and bgpd_options="-A 127.0.0.1"), as frrcommon.sh sources it.
func ParseFRRDaemons(data string) (FRRDaemons, error) {
	vars := map[string]string{}
	sc := bufio.NewScanner(strings.NewReader(data))
	for ln := 1; sc.Scan(); ln++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			return FRRDaemons{}, fmt.Errorf("daemons line %d: %q is not NAME=VALUE", ln, line)
		}
		words, err := SplitCommand(v)
		if err != nil || len(words) > 1 {
			return FRRDaemons{}, fmt.Errorf("daemons line %d: value %q: quote values with spaces", ln, v)
		}
		vars[k] = strings.Join(words, "")
	}
	var d FRRDaemons
	d.Profile = vars["frr_profile"]
	for _, name := range frrOrder() {
		always := name == "zebra" || name == "staticd" || name == "mgmtd"
		if !always && vars[name] != "yes" {
			continue
		}
		if name == "mgmtd" {
			if _, err := os.Stat(filepath.Join(frrDir, name)); err != nil {
				continue // FRR before 9.0 has no mgmtd
			}
		}
		opts, err := SplitCommand(vars[name+"_options"])
		if err != nil {
			return FRRDaemons{}, fmt.Errorf("%s_options: %w", name, err)
		}
		d.Daemons = append(d.Daemons, FRRDaemon{Name: name, Options: opts})
	}
	return d, nil
}

// startFRR starts FRR the way its container image does: the daemons that
// the bound /etc/frr/daemons enables, in the foreground (so the runner owns
// their PIDs), each waited for until its vty socket exists in the node's
// /run/frr, then vtysh -b loads /etc/frr/frr.conf.
func (l *Lab) startFRR(ctx context.Context, n *nodeRT) error {
	root := fmt.Sprintf("/proc/%d/root", n.holder.PID)
	data, err := os.ReadFile(filepath.Join(root, "etc/frr/daemons"))
	if err != nil {
		return fmt.Errorf("FRR image: read /etc/frr/daemons in the node (bind one): %w", err)
	}
	d, err := ParseFRRDaemons(string(data))
	if err != nil {
		return fmt.Errorf("FRR image: /etc/frr/daemons: %w", err)
	}
	u, err := user.Lookup("frr")
	if err != nil {
		return fmt.Errorf("FRR image: the frr user is missing (apt-get install frr): %w", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	run := filepath.Join(root, "run/frr")
	if err := os.MkdirAll(run, 0o755); err != nil {
		return err
	}
	if err := os.Chown(run, uid, gid); err != nil {
		return err
	}
	for _, dm := range d.Daemons {
		// A daemon that was stopped may leave its vty socket and pid file
		// behind: waiting for a stale socket would hand vtysh -b a dead
		// daemon, which it skips without an error.
		for _, ext := range []string{".vty", ".pid"} {
			if err := os.Remove(filepath.Join(run, dm.Name+ext)); err != nil && !os.IsNotExist(err) {
				return err
			}
		}
		argv := append([]string{filepath.Join(frrDir, dm.Name)}, dm.Options...)
		if d.Profile != "" {
			argv = append(argv, "-F", d.Profile)
		}
		argv = append(argv, "--log", "stdout")
		p, err := l.startIn(n, dm.Name, argv)
		if err != nil {
			return err
		}
		l.mu.Lock()
		n.role = append(n.role, p)
		l.mu.Unlock()
		vty := filepath.Join(run, dm.Name+".vty")
		if err := waitFor(ctx, 30*time.Second, func() error {
			if p.Exited() {
				return fmt.Errorf("%s exited: %s", dm.Name, tailLines(p.Output(), 10))
			}
			c, err := net.Dial("unix", vty)
			if err != nil {
				return fmt.Errorf("%s does not answer on its vty socket yet: %w", dm.Name, err)
			}
			c.Close()
			return nil
		}); err != nil {
			return fmt.Errorf("FRR image: %w", err)
		}
	}
	if out, err := l.execIn(ctx, n, []string{"vtysh", "-b"}); err != nil {
		return fmt.Errorf("FRR image: vtysh -b (load /etc/frr/frr.conf): %w", err)
	} else if strings.Contains(out, "% ") {
		return fmt.Errorf("FRR image: vtysh -b reported configuration errors:\n%s", out)
	}
	names := make([]string, 0, len(d.Daemons))
	for _, dm := range d.Daemons {
		names = append(names, dm.Name)
	}
	l.log.Info("FRR started", "node", n.node.Name, "daemons", strings.Join(slices.Clip(names), " "))
	return nil
}

// waitFor calls cond every 20 ms until it returns nil, ctx ends or timeout
// passes; it returns cond's last error.
func waitFor(ctx context.Context, timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// tailLines returns the last n lines of s.
func tailLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
