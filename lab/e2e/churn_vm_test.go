//go:build linux && vm

package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/observe"
)

// Churn scenarios (issue 13, docs/flow-sync.md): real servers change while
// 200 long-lived connections are open, then a director is killed. The
// router moves the killed director's flows to the others, whose Maglev
// tables no longer map all of them to the real server they started on. With
// ipvs.sync every director holds every flow's entry and none breaks
// (asserted); without it the broken connections are measured and reported.

const (
	churnVictim = "d3"
	// syncSection turns on connection synchronization on the lab's LAN.
	syncSection = "\nipvs:\n  sync: { interface: eth1, sync_id: 1 }\n"
	// The lab's drain delay (10 s) would delete a drained or removed real
	// server, and break its flows on purpose (docs/flow-sync.md, 4), before
	// the scenario ends: those scenarios keep it draining longer.
	labDrainDelay   = "drain_delay: 10s"
	churnDrainDelay = "drain_delay: 5m"
)

// churnLab is the lab during the churn scenarios: the director files as
// deployed, which every step edits a copy of.
type churnLab struct {
	*env
	orig map[string]string
	// ports counts the client port ranges used (portRange).
	ports int
}

// edit changes a director file's contents.
type edit func(cfg string) string

// churnCase is one kind of real-server change.
type churnCase struct {
	name   string
	server string // the real server it concerns
	// start are the edits of the starting point (before the connections
	// open); change is the churn, on the running directors, returning once
	// every director shows it; undo reverts what the files cannot, on every
	// director (idempotent).
	start  []edit
	change func(t *testing.T, c *churnLab, sc string, sync bool)
	undo   func(t *testing.T, c *churnLab, sc string)
}

// churnCases are issue 13's three changes.
func churnCases() []churnCase {
	rs2, rs3 := serverAddr["rs2"], serverAddr["rs3"]
	return []churnCase{
		{name: "real server added", server: "rs3", start: []edit{withoutBackend(rs3)},
			change: func(t *testing.T, c *churnLab, sc string, sync bool) {
				c.write(t, sc, directors, sync)
				c.waitWeight(t, sc, rs3, 1)
			}},
		{name: "real server drained (directorctl drain)", server: "rs2", start: []edit{longDrain},
			change: func(t *testing.T, c *churnLab, sc string, _ bool) {
				c.ctlAll(t, sc, directors, "drain", rs2, "--reason", "churn scenario")
				c.waitWeight(t, sc, rs2, 0)
			},
			undo: func(t *testing.T, c *churnLab, sc string) { c.ctlAll(t, sc, directors, "enable", rs2) }},
		{name: "real server removed from the configuration (alive, draining)", server: "rs2", start: []edit{longDrain},
			change: func(t *testing.T, c *churnLab, sc string, sync bool) {
				c.write(t, sc, directors, sync, withoutBackend(rs2), longDrain)
				c.waitWeight(t, sc, rs2, 0)
			}},
	}
}

// withoutBackend removes a real server from the pool (both services share
// it through a YAML anchor).
func withoutBackend(addr string) edit {
	return func(cfg string) string {
		return strings.Replace(cfg, fmt.Sprintf("      - { address: %s, weight: 1 }\n", addr), "", 1)
	}
}

// longDrain keeps a removed real server draining through the scenario.
func longDrain(cfg string) string { return strings.Replace(cfg, labDrainDelay, churnDrainDelay, 1) }

// churn runs every case with synchronization, then without it, and leaves
// the directors as deployed.
func (e *env) churn(t *testing.T) {
	c := &churnLab{env: e, orig: map[string]string{}}
	for _, d := range directors {
		data, err := os.ReadFile(c.file(d))
		if err != nil {
			e.fatal(t, "churn", err)
		}
		c.orig[d] = string(data)
		for _, must := range []string{labDrainDelay, fmt.Sprintf("      - { address: %s, weight: 1 }\n", serverAddr["rs3"])} {
			if !strings.Contains(c.orig[d], must) {
				e.fatal(t, "churn", fmt.Errorf("%s.yaml lacks %q, which the churn scenarios edit", d, must))
			}
		}
	}
	for _, sync := range []bool{true, false} {
		for _, cc := range churnCases() {
			name := strings.ReplaceAll(cc.name, " ", "_") + map[bool]string{false: "/without_sync", true: "/with_sync"}[sync]
			if !t.Run(name, func(t *testing.T) { c.run(t, cc, sync) }) {
				break
			}
		}
	}
	const sc = "churn (restore)"
	c.clientPorts(t, sc, "32768 60999")
	for _, d := range directors {
		if err := os.WriteFile(c.file(d), []byte(c.orig[d]), 0o644); err != nil {
			e.fatal(t, sc, err)
		}
		c.ctl(t, sc, d, "reload")
	}
	if err := e.steady(context.Background(), 2*time.Minute); err != nil {
		e.fatal(t, sc, err)
	}
}

// run: start from the case's configuration, open the connections, change
// the real servers, wait (with sync) until the survivors hold every
// connection, kill the victim director, count what broke, and bring the
// victim back.
func (c *churnLab) run(t *testing.T, cc churnCase, sync bool) {
	sc := cc.name + ", then " + churnVictim + " killed" + map[bool]string{false: " (without sync)", true: " (with sync)"}[sync]
	c.write(t, sc, directors, sync, cc.start...)
	if _, err := observe.WaitNextHops(context.Background(), c.lab, router, vip, addrs(directors...), 2*time.Minute); err != nil {
		c.fatal(t, sc, err)
	}
	c.waitServing(t, sc, cc.start)
	c.portRange(t, sc)
	row := ChurnRow{Event: cc.name, Sync: sync}
	var kill time.Time
	tr := observe.Traffic{Node: client, Echo: echoVIP, Conns: holdConns, URL: webURL, Rate: loadRate}
	m, err := c.around(t, sc, tr, func(ctx context.Context) error {
		cc.change(t, c, sc, sync)
		if sync {
			d, err := c.waitSynced(holdConns, 30*time.Second)
			row.Synced = d
			if err != nil {
				return err
			}
		}
		row.OnVictim = c.echoConns(churnVictim)
		kill = time.Now()
		if err := c.lab.StopNode(churnVictim); err != nil {
			return err
		}
		conv, err := observe.WaitNextHops(ctx, c.lab, router, vip, addrs(except(directors, churnVictim)...), 30*time.Second)
		row.Converged = conv
		return err
	})
	if err != nil {
		c.fatal(t, sc, err)
	}
	row.Open = m.Opened
	row.BrokenByChange = m.Hold.BrokenBetween(m.Hold.Start, kill)
	row.Broken = m.Hold.BrokenBetween(kill, m.Hold.End.Add(time.Second))
	row.Requests, row.Failed = m.HTTP.Sent, m.FailedDuring
	c.report.Churn = append(c.report.Churn, row)
	t.Logf("%s: %s; %d on %s; broken: %d before the kill, %d after; %v", sc, m, row.OnVictim, churnVictim, row.BrokenByChange, row.Broken, m.Hold.ByServer)
	c.check(t, sc, churnVictim+" carried connections when it was killed", row.OnVictim >= holdConns/10, "%d of %d", row.OnVictim, holdConns)
	// Without sync only measured: on a loaded machine BFD sessions flap,
	// and every flap is a director loss that breaks moved flows before the
	// kill too.
	if sync {
		c.check(t, sc, "no connection broke before the kill (the change itself breaks none)", row.BrokenByChange == 0, "%d broke", row.BrokenByChange)
		c.check(t, sc, "no connection broke when "+churnVictim+" was killed", row.Broken == 0, "%d of %d broke", row.Broken, row.Open)
	}
	c.bringBack(t, sc, cc, sync)
}

// bringBack starts the victim again with the lab's files (plus the sync
// section) and reverts the change on the survivors.
func (c *churnLab) bringBack(t *testing.T, sc string, cc churnCase, sync bool) {
	c.write(t, sc, directors, sync)
	if err := c.lab.StartNode(context.Background(), churnVictim); err != nil {
		c.fatal(t, sc, err)
	}
	if _, err := observe.WaitNextHops(context.Background(), c.lab, router, vip, addrs(directors...), 2*time.Minute); err != nil {
		c.fatal(t, sc+" (bring back)", err)
	}
	if cc.undo != nil {
		cc.undo(t, c, sc)
	}
	if err := c.steady(context.Background(), 2*time.Minute); err != nil {
		c.fatal(t, sc+" (bring back)", err)
	}
}

// file is a director's configuration file in the lab's copy.
func (c *churnLab) file(d string) string {
	return filepath.Join(c.dir, "lab/topology/directors", d+".yaml")
}

// write makes the files of nodes the deployed ones with edits applied and
// the sync section when sync, and reloads those of running directors (the
// files are bound into the nodes).
func (c *churnLab) write(t *testing.T, sc string, nodes []string, sync bool, edits ...edit) {
	t.Helper()
	for _, d := range nodes {
		cfg := c.orig[d]
		for _, e := range edits {
			cfg = e(cfg)
		}
		if sync {
			cfg += syncSection
		}
		if err := os.WriteFile(c.file(d), []byte(cfg), 0o644); err != nil {
			c.fatal(t, sc, err)
		}
	}
	for _, d := range nodes {
		if c.running(d) {
			c.ctl(t, sc, d, "reload")
		}
	}
}

// running reports whether a director's daemon runs (not killed).
func (c *churnLab) running(d string) bool {
	for _, p := range c.lab.Procs(d) {
		if !p.Exited() {
			return true
		}
	}
	return false
}

// ctl runs directorctl in a director.
func (c *churnLab) ctl(t *testing.T, sc, d string, args ...string) {
	t.Helper()
	if out, err := c.lab.Exec(context.Background(), d, append([]string{"directorctl"}, args...)...); err != nil {
		c.fatal(t, sc, fmt.Errorf("%s: directorctl %s: %v %s", d, strings.Join(args, " "), err, out))
	}
}

// ctlAll runs directorctl in every running director of nodes.
func (c *churnLab) ctlAll(t *testing.T, sc string, nodes []string, args ...string) {
	t.Helper()
	for _, d := range nodes {
		if c.running(d) {
			c.ctl(t, sc, d, args...)
		}
	}
}

// waitServing waits until every director's two services hold the pool the
// start edits leave, each at weight 1, and nothing else.
func (c *churnLab) waitServing(t *testing.T, sc string, start []edit) {
	t.Helper()
	cfg := c.orig["d1"]
	for _, e := range start {
		cfg = e(cfg)
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := c.holds(true, func(addr string) int {
			if strings.Contains(cfg, "address: "+addr+",") {
				return 1
			}
			return -1
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.fatal(t, sc, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// waitWeight waits until every running director has addr at weight w in
// both services (an added real server's health check must rise first). For
// w 0 an absent destination also counts: a drained one without connections
// left is deleted (the web service's short requests leave none).
func (c *churnLab) waitWeight(t *testing.T, sc, addr string, w int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		err := c.holds(false, func(a string) int {
			if a == addr {
				return w
			}
			return -2 // any
		})
		if err == nil {
			return
		}
		if time.Now().After(deadline) {
			c.fatal(t, sc, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// holds checks every running director's IPVS: want(real server address) is
// its weight on both services, -1 for absent, -2 for anything; unless
// strict, a weight 0 may also be absent.
func (c *churnLab) holds(strict bool, want func(addr string) int) error {
	for _, d := range directors {
		if !c.running(d) {
			continue
		}
		tbl, err := observe.ReadIPVS(c.lab, d)
		if err != nil {
			return err
		}
		for _, port := range []string{"80", "7000"} {
			for _, s := range servers {
				w, dst := want(serverAddr[s]), tbl[vip+":"+port].Dest(serverAddr[s]+":"+port)
				switch {
				case w == -2:
				case w == -1 && dst != nil:
					return fmt.Errorf("%s still has %s:%s (%+v)", d, serverAddr[s], port, dst)
				case w == 0 && dst == nil && !strict:
				case w >= 0 && (dst == nil || dst.Weight != w):
					return fmt.Errorf("%s: %s:%s not at weight %d (%+v)", d, serverAddr[s], port, w, dst)
				}
			}
		}
	}
	return nil
}

// waitSynced waits until every director other than the victim holds an
// established entry for at least n echo connections (its own and the
// synchronized ones) and returns how long that took.
func (c *churnLab) waitSynced(n int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	for {
		var short []string
		for _, d := range except(directors, churnVictim) {
			out, err := c.lab.Exec(context.Background(), d, "ipvsadm", "-Lnc")
			if err != nil {
				return 0, fmt.Errorf("%s: ipvsadm -Lnc: %v", d, err)
			}
			if got := establishedTo(out, echoVIP); got < n {
				short = append(short, fmt.Sprintf("%s holds %d", d, got))
			}
		}
		if len(short) == 0 {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return 0, fmt.Errorf("connection entries not synchronized after %s: %s of %d", timeout, strings.Join(short, ", "), n)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// establishedTo counts the ESTABLISHED entries to the virtual address vaddr
// in `ipvsadm -Lnc` output ("TCP 14:58 ESTABLISHED 192.0.2.2:40000
// 198.18.0.10:7000 10.0.1.21:7000").
func establishedTo(out, vaddr string) int {
	n := 0
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 6 && f[2] == "ESTABLISHED" && f[4] == vaddr {
			n++
		}
	}
	return n
}

// portRange gives the client a range of source ports no earlier scenario
// used. A scenario whose director was killed leaves connection entries
// behind (a flow moved to a director without its entry gets a new one there,
// pointing at another real server, which resets it; nothing passes that
// director to end the entry): a new connection from the same port would hit
// such an entry and fail to open.
func (c *churnLab) portRange(t *testing.T, sc string) {
	t.Helper()
	lo := 10000 + 1500*c.ports
	c.ports++
	c.clientPorts(t, sc, fmt.Sprintf("%d %d", lo, lo+1499))
}

// clientPorts sets the client's ip_local_port_range.
func (c *churnLab) clientPorts(t *testing.T, sc, r string) {
	t.Helper()
	if out, err := c.lab.Exec(context.Background(), client, "sysctl", "-w", "net.ipv4.ip_local_port_range="+r); err != nil {
		c.fatal(t, sc, fmt.Errorf("client: set the port range %s: %v %s", r, err, out))
	}
}
