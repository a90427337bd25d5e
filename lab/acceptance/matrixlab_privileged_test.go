//go:build linux && privileged

package acceptance

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/lab/netlab"
	"github.com/anycast-director/director/lab/nslab"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// The matrix lab is lab/topology/tests/peering-matrix.clab.yml: a router
// with the directors' LAN (10.0.1.0/24 and fd00:1::/64, router .1) and a
// client behind it (192.0.2.0/24 and 2001:db8:c::/64); director k at
// 10.0.1.(10+k) and fd00:1::(10+k) on the LAN runs the real directord with
// one `local` service on its shape's VIP, port matrixPort, whose health
// target is the listener helper in the same namespace. The listener answers
// every connection with its director's name, so the client helper can tell
// who served a request.

// matrixPort is the port of every director's service.
const matrixPort = "8080"

// matrixLab is a router of one flavor and a pair of directors per shape.
type matrixLab struct {
	t          testing.TB
	flavor     string
	topo       *netlab.Topo
	rtr        *netlab.NS
	client     *netlab.NS
	shapes     []shape
	dirs       []*mDirector
	routerConf string
	frr        *netlab.FRR
	bird       *netlab.BIRD
}

// mDirector is one director of the matrix.
type mDirector struct {
	k        int
	name     string // d<k>
	shape    shape
	bfd      bool   // its configuration asks for BFD (director a of a pair)
	addr     string // its session address (IPv4 or IPv6)
	ns       *netlab.NS
	dir      string
	file     string
	listener *netlab.Proc
	lsnSkip  int
	daemon   *netlab.Proc
}

// newMatrixLab deploys the topology and writes the directors' files.
func newMatrixLab(t testing.TB, flavor string, shapes []shape) *matrixLab {
	t.Helper()
	m := &matrixLab{t: t, flavor: flavor, topo: netlab.Deploy(t, "peering-matrix"), shapes: shapes}
	m.rtr, m.client = m.topo.Node("rtr"), m.topo.Node("client")
	for _, s := range shapes {
		for _, withBFD := range []bool{true, false} {
			m.addDirector(s, withBFD)
		}
	}
	t.Cleanup(m.dumpOnFailure)
	return m
}

// addDirector takes the next director node of the topology for a shape and
// writes its file.
func (m *matrixLab) addDirector(s shape, withBFD bool) {
	m.t.Helper()
	k := len(m.dirs) + 1
	d := &mDirector{k: k, name: fmt.Sprintf("d%d", k), shape: s, bfd: withBFD}
	d.ns = m.topo.Node(d.name)
	d.addr = fmt.Sprintf("10.0.1.%d", 10+k)
	if s.v6 {
		d.addr = fmt.Sprintf("fd00:1::%d", 10+k)
	}
	d.dir = filepath.Join(m.topo.Dir(), d.name)
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		m.t.Fatal(err)
	}
	d.file = filepath.Join(d.dir, d.name+".yaml")
	m.dirs = append(m.dirs, d)
	if err := os.WriteFile(d.file, []byte(m.render(d)), 0o644); err != nil {
		m.t.Fatal(err)
	}
}

// render writes a director's configuration file.
func (m *matrixLab) render(d *mDirector) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	s := d.shape
	asn := 65100 + d.k
	if s.ibgp {
		asn = routerASN
	}
	listen := 179
	if s.noListen {
		listen = 0
	}
	router := "10.0.1.1"
	if s.v6 {
		router = "fd00:1::1"
	}
	w("director: { name: %s, announce: bgp, graceful_shutdown: 1s, linger: 1s }", d.name)
	w("api: { socket: %s }", filepath.Join(d.dir, "directord.sock"))
	w(`metrics: { listen: "" }`)
	w("log: { format: json, level: info }")
	w("bgp:")
	w("  asn: %d", asn)
	w("  router_id: 10.0.1.%d", 10+d.k)
	w("  listen_port: %d", listen)
	w("  peers:")
	w("    - address: %q", router)
	w("      asn: %d", routerASN)
	w("      local_address: %q", d.addr)
	// The default hold time (9 s): this test needs sessions that stay up on a
	// loaded machine, not fast detection.
	if s.peer != "" {
		w("      %s", s.peer)
	}
	if d.bfd {
		w("      bfd: { min_interval: 1s, multiplier: 3 }")
	}
	w("services:")
	w("  - name: web")
	w("    vip: %q", m.vip(s))
	w("    port: %s", matrixPort)
	w("    forwarding: local")
	w("    health: { type: tcp, interval: %s, timeout: %s, rise: 1, fall: %d }", healthInterval, healthInterval/2, healthFall)
	return b.String()
}

// start generates the router's configuration with `directord router-config`
// from every director's file, starts the router with it as printed, then
// every director's listener and daemon.
func (m *matrixLab) start() {
	m.t.Helper()
	var files []string
	for _, d := range m.dirs {
		files = append(files, d.file)
	}
	m.routerConf = routerConfig(m.t, m.flavor, files, "-router-id", "10.0.1.1")
	switch m.flavor {
	case "frr":
		m.frr = m.rtr.StartFRR(m.routerConf, "bgpd", "bfdd")
	default:
		m.bird = m.rtr.StartBIRD(m.routerConf)
	}
	for _, d := range m.dirs {
		m.startListener(d)
		d.daemon = d.ns.Start(d.name+"/directord", nil, directordBin, "run", "-config", d.file)
	}
	for _, d := range m.dirs {
		if _, _, err := d.daemon.WaitOutput("directord running", 0, 30*time.Second); err != nil {
			m.t.Fatal(err)
		}
	}
}

// startListener runs the listener helper, answering with the director's name.
func (m *matrixLab) startListener(d *mDirector) {
	m.t.Helper()
	d.listener, d.lsnSkip = startListenerProc(m.t, d.ns, d.name, matrixPort, d.name)
}

// setListener opens or closes a director's service port and waits for the
// helper to confirm.
func (m *matrixLab) setListener(d *mDirector, open bool) {
	m.t.Helper()
	setListenerPort(m.t, d.listener, &d.lsnSkip, matrixPort, open)
}

// pair returns a shape's directors: a (asks for BFD) and b.
func (m *matrixLab) pair(name string) (a, b *mDirector) {
	for _, d := range m.dirs {
		if d.shape.name != name {
			continue
		}
		if d.bfd {
			a = d
		} else {
			b = d
		}
	}
	return a, b
}

// waitNextHops waits until the router's FIB routes a shape's VIP over
// exactly the given directors and returns the time since start.
func (m *matrixLab) waitNextHops(s shape, start time.Time, timeout time.Duration, ds ...*mDirector) time.Duration {
	m.t.Helper()
	var want []string
	for _, d := range ds {
		want = append(want, d.addr)
	}
	slices.Sort(want)
	var at time.Time
	_, err := netlab.Wait(timeout, 10*time.Millisecond, func() error {
		got, err := m.rtr.Gateways(m.vip(s))
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("%s: next hops of %s are %v, want %v", s.name, m.vip(s), got, want)
		}
		at = time.Now()
		return nil
	})
	if err != nil {
		m.t.Fatalf("router FIB (%s): %v", m.flavor, err)
	}
	return at.Sub(start)
}

// waitAllRoutes waits until every VIP is routed over both of its directors.
func (m *matrixLab) waitAllRoutes(timeout time.Duration) {
	m.t.Helper()
	start := time.Now()
	for _, s := range m.shapes {
		a, b := m.pair(s.name)
		m.waitNextHops(s, start, timeout-time.Since(start), a, b)
	}
	m.t.Logf("%s: every VIP routed over both of its directors %s after the daemons started", m.flavor, ms(time.Since(start)))
}

// status reads a director's status over its API socket.
func (m *matrixLab) status(d *mDirector) (*directorv1.GetStatusResponse, error) {
	conn, err := grpc.NewClient("unix://"+filepath.Join(d.dir, "directord.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return directorv1.NewDirectorClient(conn).GetStatus(ctx, &directorv1.GetStatusRequest{})
}

// waitPeer waits until a director reports its session established, with
// BFD in the wanted state.
func (m *matrixLab) waitPeer(d *mDirector, want directorv1.BFDState, timeout time.Duration) {
	m.t.Helper()
	netlab.MustWait(m.t, timeout, d.name+" ("+d.shape.name+") session", func() error {
		st, err := m.status(d)
		if err != nil {
			return err
		}
		if len(st.Peers) != 1 {
			return fmt.Errorf("%d peers", len(st.Peers))
		}
		p := st.Peers[0]
		if p.State != directorv1.PeerState_PEER_STATE_ESTABLISHED {
			return fmt.Errorf("session %s (last error %q)", p.State, p.LastError)
		}
		if p.BfdState != want {
			return fmt.Errorf("bfd %s, want %s", p.BfdState, want)
		}
		return nil
	})
}

// requests makes n connections from the client to a shape's VIP and counts
// the answers by director name ("error" counts failures).
func (m *matrixLab) requests(s shape, n int) map[string]int {
	m.t.Helper()
	self, err := os.Executable()
	if err != nil {
		m.t.Fatal(err)
	}
	host := m.vip(s)
	if s.v6 {
		host = "[" + host + "]"
	}
	out, err := m.client.Run("env", fmt.Sprintf("%s=%s:%s,%d", clientEnv, host, matrixPort, n), self)
	if err != nil {
		m.t.Fatalf("client to %s: %v\n%s", host, err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	got := map[string]int{}
	if err := json.Unmarshal([]byte(lines[len(lines)-1]), &got); err != nil {
		m.t.Fatalf("client to %s printed %q: %v", host, out, err)
	}
	return got
}

// checkConfig runs `directord check-config` on a director's file.
func (m *matrixLab) checkConfig(d *mDirector) string {
	m.t.Helper()
	out, err := exec.Command(directordBin, "check-config", d.file).CombinedOutput()
	if err != nil {
		m.t.Fatalf("check-config %s: %v\n%s", d.file, err, out)
	}
	return string(out)
}

// routerMentionsBFD reports whether the router's configuration turns BFD on
// for the neighbor at addr.
func (m *matrixLab) routerMentionsBFD(addr string) bool {
	if m.flavor == "frr" {
		return strings.Contains(m.routerConf, "neighbor "+addr+" bfd")
	}
	_, block, _ := strings.Cut(m.routerConf, "neighbor "+addr+" ")
	block, _, _ = strings.Cut(block, "\n}")
	return strings.Contains(block, "bfd")
}

// dumpOnFailure logs the router's view and the daemons' last lines.
func (m *matrixLab) dumpOnFailure() {
	if !m.t.Failed() {
		return
	}
	if m.frr != nil {
		out, _ := m.frr.Vtysh("show bgp summary", "show bfd peers brief")
		m.t.Logf("%s router view:\n%s", m.flavor, out)
	}
	if m.bird != nil {
		out, _ := m.bird.Birdc("show", "protocols")
		m.t.Logf("%s router view:\n%s", m.flavor, out)
	}
	out, _ := m.rtr.Run("ip", "route", "show", "table", "all")
	m.t.Logf("%s router routes:\n%s", m.flavor, out)
	m.t.Logf("%s router configuration (router-config output):\n%s", m.flavor, m.routerConf)
	for _, d := range m.dirs {
		if d.daemon != nil {
			m.t.Logf("%s (%s) directord output (last lines):\n%s", d.name, d.shape.name, nslab.Tail(d.daemon.Output(), 20))
		}
	}
}
