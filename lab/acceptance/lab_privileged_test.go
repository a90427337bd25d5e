//go:build linux && privileged

package acceptance

import (
	"cmp"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
	"github.com/anycast-director/director/lab/nslab"
)

// Every lab is one router namespace and up to three director namespaces, each
// director on its own veth link, as lab/topology/tests/router-directors.clab.yml
// lays them out:
//
//	rtr eth<k> 10.0.k.1/24 fd00:k::1/64  <->  d<k> eth1 10.0.k.11/24 fd00:k::11/64
//
// Director k runs the real directord with AS 6510k (so the router needs
// multipath-relax, which router-config must notice) and `local` services on
// the VIPs below, whose one health target is the VIP itself at the service
// port: the listener helper in the same namespace, listening on every
// address. The router runs exactly what `directord router-config -flavor
// frr` prints for the directors' files.

const (
	routerASN = 65000
	vip4      = "198.18.0.10"
	vip6      = "2001:db8:100::10"
	vip6Pfx   = vip6 + "/128"
	// port4 and port6 are the services on vip4 and vip6. They differ so the
	// listener helper can fail one VIP's health and not the other's.
	port4 = "8080"
	port6 = "8086"

	// Health checks of every service: tcp every healthInterval, down after
	// healthFall failures, up after one success.
	healthInterval = 200 * time.Millisecond
	healthFall     = 2
	// dropBound is the bound for a director whose listener stops:
	// gone from the router's FIB within fall x interval + 1 s.
	dropBound = healthFall*healthInterval + time.Second
)

func dirAddr4(k int) string { return fmt.Sprintf("10.0.%d.11", k) }
func dirAddr6(k int) string { return fmt.Sprintf("fd00:%d::11", k) }
func rtrAddr4(k int) string { return fmt.Sprintf("10.0.%d.1", k) }
func rtrAddr6(k int) string { return fmt.Sprintf("fd00:%d::1", k) }

// dirConf shapes one director's configuration file.
type dirConf struct {
	// announce is "bgp" (the default) or "kernel" (OSPF through a local FRR).
	announce string
	// bfd adds BFD 100 ms x 3 (bfdInterval x 3 when set) to the IPv4 session.
	bfd         bool
	bfdInterval time.Duration
	// ipv6 adds an IPv6 session to the router and a service on vip6.
	ipv6 bool
	// hold is the BGP hold time (3 s when zero; keepalive is a third).
	hold time.Duration
	// holdDown is director.hold_down.
	holdDown time.Duration
	// password is the sessions' MD5 password as the router knows it;
	// daemonPassword, when set, is the one the daemon runs with instead (a
	// misconfigured director).
	password, daemonPassword string
	// extraServices is YAML appended to the services list of both files;
	// daemonOnlyServices only to the file the daemon runs (a service that
	// was never given to router-config).
	extraServices, daemonOnlyServices string
	// notify is a notify section (YAML at the top level) for the daemon's file.
	notify string
	// restartTime, when set, turns on BGP Graceful Restart with it.
	restartTime time.Duration
}

// render writes the configuration file of director k; forDaemon selects the
// daemon's variant over router-config's.
func (c dirConf) render(k int, dir string, forDaemon bool) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	announce := cmp.Or(c.announce, "bgp")
	w("director: { name: d%d, announce: %s, hold_down: %s, graceful_shutdown: 1s, linger: 1s, state_dir: %s }", k, announce, c.holdDown,
		filepath.Join(dir, "state"))
	w("api: { socket: %s }", filepath.Join(dir, "directord.sock"))
	w(`metrics: { listen: "" }`)
	w("log: { format: json, level: info }")
	if announce == "kernel" {
		w("kernel: { table: 200, protocol: 250 }")
	} else {
		pw := c.password
		if forDaemon && c.daemonPassword != "" {
			pw = c.daemonPassword
		}
		w("bgp:")
		w("  asn: %d", 65100+k)
		w("  router_id: %s", dirAddr4(k))
		if c.restartTime > 0 {
			w("  graceful_restart: { restart_time: %s }", c.restartTime)
		}
		w("  peers:")
		peer := func(addr, local string, bfd bool) {
			w("    - address: %q", addr)
			w("      asn: %d", routerASN)
			w("      local_address: %q", local)
			w("      hold_time: %s", cmp.Or(c.hold, 3*time.Second))
			if pw != "" {
				w("      password: %q", pw)
			}
			if bfd {
				w("      bfd: { min_interval: %s, multiplier: 3 }", cmp.Or(c.bfdInterval, 100*time.Millisecond))
			}
		}
		peer(rtrAddr4(k), dirAddr4(k), c.bfd)
		if c.ipv6 {
			peer(rtrAddr6(k), dirAddr6(k), false)
		}
	}
	w("services:")
	b.WriteString(service("web", vip4, port4, ""))
	if c.ipv6 {
		b.WriteString(service("web6", vip6, port6, ""))
	}
	b.WriteString(c.extraServices)
	if forDaemon {
		b.WriteString(c.daemonOnlyServices)
		b.WriteString(c.notify)
	}
	return b.String()
}

// service returns one `local` service as a YAML list item. Its health target
// is the VIP itself at the service port, or target ("addr:port") when set.
func service(name, vip, port, target string) string {
	s := fmt.Sprintf("  - name: %s\n    vip: %q\n    port: %s\n    forwarding: local\n", name, vip, port)
	s += fmt.Sprintf("    health: { type: tcp, interval: %s, timeout: %s, rise: 1, fall: %d }\n",
		healthInterval, healthInterval/2, healthFall)
	if target != "" {
		addr, tport, _ := strings.Cut(target, ":")
		s += fmt.Sprintf("    backends: [ { address: %q, port: %s } ]\n", addr, tport)
	}
	return s
}

// aLab is a router and its directors.
type aLab struct {
	t    testing.TB
	topo *netlab.Topo
	rtr  *netlab.NS
	frr  *netlab.FRR
	bird *netlab.BIRD // the router when it runs BIRD
	dirs []*director  // director k is dirs[k-1]
	// routerConf is the router's configuration as router-config printed it.
	routerConf string
}

// director is one director namespace with its listener and daemon.
type director struct {
	k          int
	name       string
	ns         *netlab.NS
	conf       dirConf
	dir        string // its folder: config files, API socket
	routerFile string // the file given to router-config
	daemonFile string // the file directord runs
	rtrIf      string // the router's interface toward it
	ifName     string // its interface toward the router
	listener   *netlab.Proc
	lsnSkip    int // listener output lines already read
	daemon     *netlab.Proc
}

// newLab builds the namespaces and links and writes each director's files;
// start the router and the directors with startBGP (or the OSPF variant).
func newLab(t testing.TB, confs ...dirConf) *aLab {
	t.Helper()
	l := &aLab{t: t, topo: netlab.Deploy(t, "router-directors")}
	l.rtr = l.topo.Node("rtr")
	for i, c := range confs {
		k := i + 1
		d := &director{k: k, name: fmt.Sprintf("d%d", k), conf: c}
		d.ns = l.topo.Node(d.name)
		d.rtrIf, d.ifName = l.topo.LinkIf("rtr", d.name), l.topo.LinkIf(d.name, "rtr")
		d.dir = filepath.Join(l.topo.Dir(), d.name)
		if err := os.MkdirAll(d.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		d.routerFile = filepath.Join(d.dir, d.name+".yaml")
		d.daemonFile = filepath.Join(d.dir, d.name+"-run.yaml")
		for path, forDaemon := range map[string]bool{d.routerFile: false, d.daemonFile: true} {
			if err := os.WriteFile(path, []byte(c.render(k, d.dir, forDaemon)), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		l.dirs = append(l.dirs, d)
	}
	t.Cleanup(l.dumpOnFailure)
	return l
}

// startBGP starts the BGP router, then every director's listener and
// daemon.
func (l *aLab) startBGP() {
	l.t.Helper()
	l.startRouterBGP()
	l.startDirectors()
}

// startDirectors starts every director's listener and daemon.
func (l *aLab) startDirectors() {
	l.t.Helper()
	for _, d := range l.dirs {
		l.startListener(d)
		l.startDaemon(d)
	}
}

// startRouterBGP generates the router's configuration with the real
// `directord router-config -flavor frr` from the directors' files and starts
// FRR zebra, bgpd and bfdd with it. The configuration is used as printed: if
// it needed hand edits to work, that would be a bug of router-config.
func (l *aLab) startRouterBGP() {
	l.t.Helper()
	var files []string
	for _, d := range l.dirs {
		files = append(files, d.routerFile)
	}
	l.routerConf = routerConfig(l.t, "frr", files)
	l.frr = l.rtr.StartFRR(l.routerConf, "bgpd", "bfdd")
}

// startListener runs the listener helper in the director's namespace, on
// the ports of the director's services.
func (l *aLab) startListener(d *director) {
	l.t.Helper()
	ports := port4
	if d.conf.ipv6 {
		ports += "," + port6
	}
	d.listener, d.lsnSkip = startListenerProc(l.t, d.ns, d.name, ports, "")
}

// startDaemon runs directord in the director's namespace and waits until it
// says it is running.
func (l *aLab) startDaemon(d *director) {
	l.t.Helper()
	d.daemon = d.ns.Start(d.name+"/directord", nil, directordBin, "run", "-config", d.daemonFile)
	if _, _, err := d.daemon.WaitOutput("directord running", 0, 30*time.Second); err != nil {
		l.t.Fatal(err)
	}
}

// setListener opens or closes one port of the director's listener and
// returns once the helper confirmed it (the socket is closed or listening).
func (l *aLab) setListener(d *director, port string, open bool) {
	l.t.Helper()
	setListenerPort(l.t, d.listener, &d.lsnSkip, port, open)
}

// gateways returns the router's FIB next hops for prefix, sorted.
func (l *aLab) gateways(prefix string) []string {
	l.t.Helper()
	gws, err := l.rtr.Gateways(prefix)
	if err != nil {
		l.t.Fatal(err)
	}
	return gws
}

// waitFIB polls the router's FIB every 10 ms until the next hops of prefix
// are exactly want, and returns the time since start when they were first
// seen so. It fails the test after timeout (counted from the call).
func (l *aLab) waitFIB(start time.Time, timeout time.Duration, prefix string, want ...string) time.Duration {
	l.t.Helper()
	want = slices.Sorted(slices.Values(want))
	var at time.Time
	_, err := netlab.Wait(timeout, 10*time.Millisecond, func() error {
		got, err := l.rtr.Gateways(prefix)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("next hops of %s are %v, want %v", prefix, got, want)
		}
		at = time.Now()
		return nil
	})
	if err != nil {
		l.t.Fatalf("router FIB: %v", err)
	}
	return at.Sub(start)
}

// addrs4 and addrs6 return the directors' next-hop addresses.
func addrs4(ds ...*director) []string {
	var out []string
	for _, d := range ds {
		out = append(out, dirAddr4(d.k))
	}
	return out
}

func addrs6(ds ...*director) []string {
	var out []string
	for _, d := range ds {
		out = append(out, dirAddr6(d.k))
	}
	return out
}

// neighbor returns the router's view of one BGP neighbor.
func (l *aLab) neighbor(addr string) (netlab.BGPNeighbor, error) {
	nb, err := l.frr.BGPNeighbors()
	if err != nil {
		return netlab.BGPNeighbor{}, err
	}
	n, ok := nb[addr]
	if !ok {
		return netlab.BGPNeighbor{}, fmt.Errorf("router has no neighbor %s", addr)
	}
	return n, nil
}

// mustNeighbor is neighbor that fails the test on error.
func (l *aLab) mustNeighbor(addr string) netlab.BGPNeighbor {
	l.t.Helper()
	n, err := l.neighbor(addr)
	if err != nil {
		l.t.Fatal(err)
	}
	return n
}

// waitBFDStable waits until the router reports BFD up with a neighbor, and
// has for at least d: a transient up on a loaded machine is no start for a
// measurement.
func (l *aLab) waitBFDStable(addr string, d time.Duration) {
	l.t.Helper()
	var since time.Time
	netlab.MustWait(l.t, 20*time.Second, "BFD up on the router with "+addr, func() error {
		n, err := l.neighbor(addr)
		if err != nil {
			return err
		}
		if n.BFD == nil || n.BFD.Status != "Up" {
			since = time.Time{}
			return fmt.Errorf("bfd %+v, bgp %s", n.BFD, n.State)
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) < d {
			return fmt.Errorf("bfd up for %s only", time.Since(since))
		}
		return nil
	})
}

// dumpOnFailure logs the router's view and the daemons' last output when the
// test failed.
func (l *aLab) dumpOnFailure() {
	if !l.t.Failed() {
		return
	}
	if l.frr != nil {
		out, _ := l.frr.Vtysh("show bgp summary", "show bfd peers brief", "show ip ospf neighbor")
		l.t.Logf("router view:\n%s", out)
	}
	if l.bird != nil {
		out, _ := l.bird.Birdc("show", "protocols")
		bfd, _ := l.bird.Birdc("show", "bfd", "sessions")
		l.t.Logf("router view:\n%s\n%s", out, bfd)
	}
	out, _ := l.rtr.Run("ip", "route", "show", "table", "all")
	l.t.Logf("router routes:\n%s", out)
	l.t.Logf("router configuration (router-config output):\n%s", l.routerConf)
	for _, d := range l.dirs {
		if d.daemon != nil {
			l.t.Logf("%s directord output (last lines):\n%s", d.name, nslab.Tail(d.daemon.Output(), 40))
		}
	}
}

// ms rounds a duration for logs.
func ms(d time.Duration) time.Duration { return d.Round(time.Millisecond) }
