//go:build linux && privileged

package health

import (
	"context"
	"errors"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
	"github.com/anycast-director/director/lab/netlab"
)

// The roles the test binary plays inside the lab's namespaces.
const (
	roleEnv               = "HEALTH_ENGINE_ROLE"
	roleProbe             = "probe"
	roleListen            = "listen"
	peerAddr              = "10.99.0.2"
	refusedPort, openPort = "9", "10"
)

// TestPrivilegedTCPEngineAsyncConnect covers the engine's `complete` path:
// a connect whose outcome the kernel reports later, through epoll and
// SO_ERROR. On loopback and even over a veth the kernel answers a connect to
// a closed port before connect() returns, so the peer namespace drops the
// first SYN to each port: the client retransmits after about 1 s, and the
// refusal (port 9) or the handshake (port 10) then arrives asynchronously,
// as it does from a real remote backend. The prober runs in its own
// namespace: the test binary re-executed there.
func TestPrivilegedTCPEngineAsyncConnect(t *testing.T) {
	switch os.Getenv(roleEnv) {
	case roleProbe:
		probeAsyncTargets(t)
		return
	case roleListen:
		listenForever(t)
		return
	}
	lab := netlab.New(t)
	client, peer := lab.Namespace("client"), lab.Namespace("peer")
	lab.Link(client, []string{"10.99.0.1/24"}, peer, []string{peerAddr + "/24"})
	peer.MustRun("nft", "add table inet dropfirst")
	peer.MustRun("nft", "add chain inet dropfirst in { type filter hook input priority 0; }")
	for _, port := range []string{refusedPort, openPort} {
		// One quota per port, spent by the first SYN.
		peer.MustRun("nft", "add rule inet dropfirst in tcp dport "+port+" tcp flags syn counter quota until 100 bytes drop")
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	args := []string{self, "-test.run=^TestPrivilegedTCPEngineAsyncConnect$", "-test.v", "-test.count=1"}
	listener := peer.Start("listener", []string{roleEnv + "=" + roleListen}, args...)
	if _, _, err := listener.WaitOutput("listening", 0, 10*time.Second); err != nil {
		t.Fatalf("listener: %v\n%s", err, listener.Output())
	}
	prober := client.Start("prober", []string{roleEnv + "=" + roleProbe}, args...)
	if err := prober.Wait(30 * time.Second); err != nil {
		rules, _ := peer.Run("nft", "list", "ruleset")
		t.Fatalf("prober in %s: %v\n%s\npeer's rules:\n%s", client.Name, err, prober.Output(), rules)
	}
	if !strings.Contains(prober.Output(), "--- PASS") {
		t.Fatalf("the prober ran no test:\n%s", prober.Output())
	}
	t.Logf("prober:\n%s", prober.Output())
}

// listenForever listens on the peer's open port until killed.
func listenForever(t *testing.T) { listenAndClose(t, "tcp", net.JoinHostPort(peerAddr, openPort)) }

// listenAndClose listens on addr, says "listening" on stdout (the test that
// started this process waits for it) and closes every connection it accepts,
// until killed.
func listenAndClose(t *testing.T, network, addr string) {
	ln, err := net.Listen(network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	os.Stdout.WriteString("listening\n")
	acceptAndClose(ln)
}

// firstResult is a target's first probe as OnProbe saw it.
type firstResult struct {
	ok      bool
	latency time.Duration
	err     error
}

// probeAsyncTargets runs the scheduler's engine against both peer ports and
// checks each target's first probe (the one whose first SYN the peer
// dropped): it took the asynchronous path (about 1 s, the SYN
// retransmission) and was judged right, refused as a failure, open as a pass.
func probeAsyncTargets(t *testing.T) {
	spec := check.Spec{Type: check.TCP, Interval: 5 * time.Second, Timeout: 4 * time.Second, Rise: 1, Fall: 1}
	var mu sync.Mutex
	first := map[uint16]firstResult{}
	got := make(chan struct{})
	s := NewScheduler(nil, Options{OnProbe: func(tg Target, ok bool, latency time.Duration, err error) {
		mu.Lock()
		defer mu.Unlock()
		if _, seen := first[tg.Port]; !seen {
			first[tg.Port] = firstResult{ok, latency, err}
			if len(first) == 2 {
				close(got)
			}
		}
	}})
	s.Update([]Target{{Addr: mustAddr(peerAddr), Port: 9, Spec: spec}, {Addr: mustAddr(peerAddr), Port: 10, Spec: spec}})
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	defer func() { cancel(); <-done }()
	select {
	case <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("no first results for both ports within 20s")
	}
	mu.Lock()
	defer mu.Unlock()
	r := first[9]
	t.Logf("refused port: ok=%t err=%v after %s", r.ok, r.err, r.latency)
	if r.ok || !errors.Is(r.err, syscall.ECONNREFUSED) {
		t.Errorf("closed port: ok=%t err=%v, want a failure with connection refused", r.ok, r.err)
	}
	if r.latency < 800*time.Millisecond {
		t.Errorf("closed port answered after %s: the refusal did not arrive asynchronously (first SYN not dropped?)", r.latency)
	}
	o := first[10]
	t.Logf("open port: ok=%t err=%v after %s", o.ok, o.err, o.latency)
	if !o.ok {
		t.Errorf("open port: %v, want a pass", o.err)
	}
	if o.latency < 800*time.Millisecond {
		t.Errorf("open port answered after %s: the handshake did not complete asynchronously", o.latency)
	}
}
