//go:build linux && privileged

package acceptance

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedOSPF: directord with `announce: kernel` in two director
// namespaces, each with FRR zebra+ospfd configured from docs/ospf.md (the
// block "ospf-director-frr-table": VIP routes in table 200, redistributed
// into OSPF), and a router running ospfd with the configuration
// routerconfig generates. The router's FIB gains and loses a director's next
// hop as the health of its VIP's listener goes down and up; the VIP stays
// local on the director throughout.
//
// The router configuration is what `directord router-config -flavor frr
// -router-id 10.0.0.1 -ospf-interfaces ... -ospf-point-to-point` prints.
func TestPrivilegedOSPF(t *testing.T) {
	c := dirConf{announce: "kernel", holdDown: 200 * time.Millisecond}
	l := newLab(t, c, c)
	d1, d2 := l.dirs[0], l.dirs[1]
	start := time.Now()
	l.startOSPF()
	netlab.MustWait(t, 30*time.Second, "OSPF adjacencies Full with both directors", func() error {
		out, err := l.frr.Vtysh("show ip ospf neighbor")
		if err != nil {
			return err
		}
		if n := strings.Count(out, "Full/"); n != len(l.dirs) {
			return fmt.Errorf("%d of %d neighbors Full:\n%s", n, len(l.dirs), out)
		}
		return nil
	})
	t.Logf("measured: OSPF adjacencies Full %s after the router started", ms(time.Since(start)))
	up := l.waitFIB(start, 30*time.Second, vip4, addrs4(d1, d2)...)
	t.Logf("measured: both directors' next hops in the router FIB %s after the router started", ms(up))
	assertAdvertised(t, d1, true)

	stop := time.Now()
	l.setListener(d1, port4, false)
	gone := l.waitFIB(stop, dropBound+2*time.Second, vip4, addrs4(d2)...)
	t.Logf("measured: director 1's listener stopped; its next hop left the router FIB after %s (bound %s)", ms(gone), dropBound)
	if gone > dropBound {
		t.Errorf("director 1 left the FIB %s after its listener stopped, want within fall x interval + 1 s = %s", ms(gone), dropBound)
	}
	assertAdvertised(t, d1, false)
	if out := d1.ns.MustRun("ip", "route", "get", vip4); !strings.HasPrefix(strings.TrimSpace(out), "local "+vip4) {
		t.Errorf("director 1: the VIP is no longer local after the withdraw: ip route get says %q", out)
	}

	back := time.Now()
	l.setListener(d1, port4, true)
	b := l.waitFIB(back, 10*time.Second, vip4, addrs4(d1, d2)...)
	t.Logf("measured: director 1 listening again; back in the router FIB after %s (rise 1 x %s + hold-down 200ms)", ms(b), healthInterval)
	assertAdvertised(t, d1, true)

	stop = time.Now()
	for _, d := range l.dirs {
		l.setListener(d, port4, false)
	}
	gone = l.waitFIB(stop, dropBound+2*time.Second, vip4)
	t.Logf("measured: every listener stopped; %s gone from the router FIB after %s", vip4, ms(gone))
}

// startOSPF starts the router's ospfd with the generated configuration, each
// director's FRR with the documented one, then the listeners and daemons.
func (l *aLab) startOSPF() {
	l.t.Helper()
	var ifs []string
	for _, d := range l.dirs {
		ifs = append(ifs, d.rtrIf)
	}
	args := []string{"router-config", "-flavor", "frr", "-router-id", "10.0.0.1",
		"-ospf-interfaces", strings.Join(ifs, ","), "-ospf-point-to-point"}
	for _, d := range l.dirs {
		args = append(args, d.routerFile)
	}
	cmd := exec.Command(directordBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("directord %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	l.routerConf = string(out)
	l.frr = l.rtr.StartFRR(l.routerConf, "ospfd")
	block := docBlock(l.t, "ospf-director-frr-table")
	for _, d := range l.dirs {
		// The documented block names the director's own router id and its
		// interface toward the router (eth0 there).
		conf := strings.ReplaceAll(block, "10.0.1.11", dirAddr4(d.k))
		conf = strings.ReplaceAll(conf, "interface eth0\n", "interface "+d.ifName+"\n")
		d.ns.StartFRR(conf, "ospfd")
	}
	l.startDirectors()
}

// assertAdvertised checks directord's advertisement route on the director:
// the VIP in table 200 with protocol 250 exactly while it is advertised.
func assertAdvertised(t *testing.T, d *director, want bool) {
	t.Helper()
	out := d.ns.MustRun("ip", "route", "show", "table", "200", "proto", "250")
	if got := strings.Contains(out, vip4); got != want {
		t.Errorf("%s: advertisement route of %s in table 200 present %v, want %v:\n%s", d.name, vip4, got, want, out)
	}
}

// docBlock returns the fenced block of docs/ospf.md tagged tag (the second
// word of the fence's info string), the configuration the docs give
// operators.
func docBlock(t testing.TB, tag string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "ospf.md"))
	if err != nil {
		t.Fatalf("read docs/ospf.md: %v", err)
	}
	re := regexp.MustCompile("(?ms)^```\\w+ " + regexp.QuoteMeta(tag) + "\n(.*?)^```")
	m := re.FindStringSubmatch(string(b))
	if m == nil {
		t.Fatalf("docs/ospf.md has no block tagged %s", tag)
	}
	return m[1]
}
