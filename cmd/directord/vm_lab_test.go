//go:build linux && vm

package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/anycast-director/director/lab/netlab"
)

// The lab of the daemon tests, lab/topology/tests/directord-vm.clab.yml:
//
//	client 10.77.0.2 ──┐                        ┌── rs1 10.77.0.11  VIPs on lo, HTTP :80
//	director 10.77.0.1 ┼── lan (bridge) ────────┼── rs2 10.77.0.12
//	  VIPs on lo       │                        └── rs3 10.77.0.13
//
// The client routes the VIPs via the director (static route, announce:
// none). The director forwards with IPVS DR (webVIP) and IP-in-IP (tunVIP);
// the real servers answer the client directly from the VIP.
const (
	labNet      = "10.77.0"
	directorIP  = labNet + ".1"
	clientIP    = labNet + ".2"
	webVIP      = "198.18.77.10"
	tunVIP      = "198.18.77.11"
	servicePort = 80
	metricsAddr = "127.0.0.1:9469" // inside the director's namespace
)

// nsPath is where `ip netns` keeps a namespace.
func nsPath(ns *netlab.NS) string { return "/run/netns/" + ns.Name }

// inNS runs fn on an OS thread inside the network namespace at path. Sockets
// created by fn stay in that namespace and may be used from any goroutine.
// The thread never leaves the namespace: it stays locked and the runtime
// discards it when the goroutine ends.
func inNS(path string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		f, err := os.Open(path)
		if err != nil {
			errc <- fmt.Errorf("open network namespace: %w", err)
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("enter network namespace %s: %w", path, err)
			return
		}
		errc <- fn()
	}()
	return <-errc
}

// nsDialer dials TCP from inside a namespace.
func nsDialer(path string) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		var c net.Conn
		err := inNS(path, func() error {
			var err error
			c, err = (&net.Dialer{Timeout: 3 * time.Second}).DialContext(ctx, network, addr)
			return err
		})
		return c, err
	}
}

// realServer is one real server namespace with an HTTP server on :80 that
// can be stopped and started again.
type realServer struct {
	name string // rs1
	ip   string // 10.77.0.11
	ns   *netlab.NS

	mu  sync.Mutex
	srv *http.Server
}

// start serves HTTP on 0.0.0.0:80 in the real server's namespace. Each
// answer names the server, the address the connection arrived at and the
// client's address: "rs1 198.18.77.10:80 10.77.0.2:41234".
func (rs *realServer) start(t testing.TB) {
	t.Helper()
	var ln net.Listener
	err := inNS(nsPath(rs.ns), func() error {
		var err error
		for range 50 { // the port may be busy for a moment after stop
			if ln, err = net.Listen("tcp4", fmt.Sprintf("0.0.0.0:%d", servicePort)); err == nil {
				return nil
			}
			time.Sleep(20 * time.Millisecond)
		}
		return err
	})
	if err != nil {
		t.Fatalf("listen in %s: %v", rs.name, err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		local, _ := r.Context().Value(http.LocalAddrContextKey).(net.Addr)
		fmt.Fprintf(w, "%s %v %s\n", rs.name, local, r.RemoteAddr)
	}), ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	rs.mu.Lock()
	rs.srv = srv
	rs.mu.Unlock()
}

// stop closes the listener and every connection.
func (rs *realServer) stop() {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	if rs.srv != nil {
		rs.srv.Close()
		rs.srv = nil
	}
}

// vmLab is the topology above plus the daemon's files.
type vmLab struct {
	t        *testing.T
	topo     *netlab.Topo
	client   *netlab.NS
	director *netlab.NS
	rs       []*realServer
	dir      string // configuration, socket, real server state
	cfgPath  string
	sock     string
	http     *http.Client // from the client namespace, a new connection per request
	// checkInterval and checkTimeout override the checks' timing in
	// writeConfig (zero: checkInterval and 300 ms).
	checkInterval, checkTimeout time.Duration
	// forwardingCheck adds forwarding_check to both services' checks.
	forwardingCheck bool
}

func newVMLab(t *testing.T) *vmLab {
	t.Helper()
	topo := netlab.Deploy(t, "directord-vm")
	l := &vmLab{t: t, topo: topo, dir: topo.Dir()}
	l.cfgPath = filepath.Join(l.dir, "directord.yaml")
	l.sock = filepath.Join(l.dir, "d.sock")
	l.director = topo.Node("director")
	l.client = topo.Node("client")
	for i := range 3 {
		rs := &realServer{name: fmt.Sprintf("rs%d", i+1), ip: fmt.Sprintf("%s.%d", labNet, 11+i)}
		rs.ns = topo.Node(rs.name)
		l.prepareRealServer(rs)
		rs.start(t)
		t.Cleanup(rs.stop)
		l.rs = append(l.rs, rs)
	}
	l.http = &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: nsDialer(nsPath(l.client)), DisableKeepAlives: true}}
	t.Cleanup(l.http.CloseIdleConnections)
	return l
}

// prepareRealServer binds the VIPs with `directord realserver` (ARP
// sysctls included) and opens the IP-in-IP tunnel for tunVIP: tunl0 up and
// no reverse-path filter, since a decapsulated packet from the client
// arrives on tunl0 while the route back to the client is on eth1.
func (l *vmLab) prepareRealServer(rs *realServer) {
	l.t.Helper()
	state := filepath.Join(l.dir, rs.name+"-state")
	for _, vip := range []string{webVIP, tunVIP} {
		out, errOut, code := directordIn(l.t, rs.ns, "realserver", "add", vip, "-state-dir", state)
		if code != exitOK {
			l.t.Fatalf("directord realserver add %s in %s: exit %d: %s %s", vip, rs.name, code, out, errOut)
		}
	}
	if _, err := rs.ns.Run("ip", "link", "show", "tunl0"); err != nil {
		l.t.Fatalf("%s has no tunl0 (is the ipip module loaded in the VM?): %v", rs.name, err)
	}
	rs.ns.MustRun("ip", "link", "set", "tunl0", "up")
	rs.ns.Sysctl("net.ipv4.conf.all.rp_filter", "0")
	rs.ns.Sysctl("net.ipv4.conf.tunl0.rp_filter", "0")
}

// answer is one HTTP answer through a VIP.
type answer struct {
	server, local, remote string
}

func parseAnswer(body string) (answer, error) {
	f := strings.Fields(body)
	if len(f) != 3 {
		return answer{}, fmt.Errorf("unexpected answer %q", body)
	}
	return answer{server: f[0], local: f[1], remote: f[2]}, nil
}

// get sends one request to vip over a new connection from the client.
func (l *vmLab) get(vip string) (answer, error) {
	resp, err := l.http.Get(fmt.Sprintf("http://%s:%d/", vip, servicePort))
	if err != nil {
		return answer{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return answer{}, fmt.Errorf("status %s", resp.Status)
	}
	return parseAnswer(string(body))
}

// spread sends n requests to vip, each on a new connection (new source
// port, so mh-port spreads them), and returns how many each real server
// answered. Every request must succeed, arrive addressed to the VIP (DR and
// IP-in-IP deliver it unchanged) and come from the client's own address (no
// NAT on the way).
func (l *vmLab) spread(vip string, n int) map[string]int {
	l.t.Helper()
	got := map[string]int{}
	var failures []string
	for i := range n {
		a, err := l.get(vip)
		if err != nil {
			failures = append(failures, fmt.Sprintf("request %d: %v", i, err))
			continue
		}
		if want := fmt.Sprintf("%s:%d", vip, servicePort); a.local != want {
			l.t.Errorf("%s answered on %s, want the VIP %s", a.server, a.local, want)
		}
		if !strings.HasPrefix(a.remote, clientIP+":") {
			l.t.Errorf("%s saw the client as %s, want %s", a.server, a.remote, clientIP)
		}
		got[a.server]++
	}
	if len(failures) > 0 {
		l.t.Errorf("%d of %d requests to %s failed: %s", len(failures), n, vip, strings.Join(failures, "; "))
	}
	return got
}

// longConn is a long-lived HTTP/1.1 connection from the client through a VIP.
type longConn struct {
	c net.Conn
	r *bufio.Reader
}

func (l *vmLab) dialLong(vip string) *longConn {
	l.t.Helper()
	c, err := nsDialer(nsPath(l.client))(context.Background(), "tcp4", fmt.Sprintf("%s:%d", vip, servicePort))
	if err != nil {
		l.t.Fatalf("dial %s from the client: %v", vip, err)
	}
	l.t.Cleanup(func() { c.Close() })
	return &longConn{c: c, r: bufio.NewReader(c)}
}

// get sends one request on the connection and returns the answer.
func (lc *longConn) get() (answer, error) {
	lc.c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(lc.c, "GET / HTTP/1.1\r\nHost: vip\r\n\r\n"); err != nil {
		return answer{}, fmt.Errorf("send on the established connection: %w", err)
	}
	resp, err := http.ReadResponse(lc.r, nil)
	if err != nil {
		return answer{}, fmt.Errorf("read on the established connection: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return answer{}, err
	}
	return parseAnswer(string(body))
}

// mustGet is get that fails the test, and checks the same real server
// answers as before.
func (lc *longConn) mustGet(t testing.TB, when, wantServer string) {
	t.Helper()
	a, err := lc.get()
	if err != nil {
		t.Fatalf("%s: the long-lived connection broke: %v", when, err)
	}
	if a.server != wantServer {
		t.Fatalf("%s: the long-lived connection is served by %s, was %s", when, a.server, wantServer)
	}
}
