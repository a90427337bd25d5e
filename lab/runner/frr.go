package runner

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/anycast-director/director/lab/nslab"
)

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
type FRRDaemon = nslab.FRRDaemon

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
			if _, err := os.Stat(filepath.Join(nslab.FRRBin, name)); err != nil {
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
// their PIDs), each waited for until it answers on its vty socket in the
// node's /run/frr, then vtysh -b loads /etc/frr/frr.conf.
func (l *Lab) startFRR(ctx context.Context, n *nodeRT) (*nslab.FRR, error) {
	data, err := os.ReadFile(n.core.HostPath("/etc/frr/daemons"))
	if err != nil {
		return nil, fmt.Errorf("FRR image: read /etc/frr/daemons in the node (bind one): %w", err)
	}
	d, err := ParseFRRDaemons(string(data))
	if err != nil {
		return nil, fmt.Errorf("FRR image: /etc/frr/daemons: %w", err)
	}
	f, err := nslab.StartFRR(ctx, n.core, nslab.FRRSpec{Daemons: d.Daemons, Profile: d.Profile, Dir: "/run/frr", Boot: true})
	if err != nil {
		return nil, fmt.Errorf("FRR image: %w", err)
	}
	l.log.Info("FRR started", "node", n.node.Name, "daemons", strings.Join(f.Order, " "))
	return f, nil
}
