//go:build !vm

package main

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anycast-director/director/control/controltest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// floodConfig is a director with one local service checked over tcp every
// 100 ms, metrics on metrics and the mTLS API on apiTCP.
func floodConfig(dir, metrics, apiTCP, vip string, backend int, cert, key, ca string) string {
	return fmt.Sprintf(`director:
  name: flood
  announce: none
  hold_down: 0s
  graceful_shutdown: 0s
  linger: 0s
  state_dir: %[1]s/state
api:
  socket: %[1]s/d.sock
  tcp: { listen: "%[3]s", cert: %[6]s, key: %[7]s, client_ca: %[8]s }
metrics:
  listen: "%[2]s"
services:
  - name: web
    vip: %[4]s
    port: 80
    forwarding: local
    health: { type: tcp, interval: 100ms, timeout: 50ms, rise: 1, fall: 2 }
    backends:
      - { address: 127.0.0.1, port: %[5]d }
`, dir, metrics, apiTCP, vip, backend, cert, key, ca)
}

// flood opens n idle TCP connections to addr, the way any local user can.
func flood(t *testing.T, addr string, n int) []net.Conn {
	t.Helper()
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("flood %s after %d connections: %v", addr, len(conns), err)
		}
		conns = append(conns, c)
	}
	t.Cleanup(func() {
		for _, c := range conns {
			c.Close()
		}
	})
	return conns
}

// refusedCount counts the connections the server has closed (EOF or reset)
// rather than holding open, reading all of them at once.
func refusedCount(conns []net.Conn) int {
	var mu sync.Mutex
	var wg sync.WaitGroup
	n := 0
	for _, c := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
			_, err := c.Read(make([]byte, 1))
			var ne net.Error
			if err == nil || errors.As(err, &ne) && ne.Timeout() {
				return
			}
			mu.Lock()
			n++
			mu.Unlock()
		}()
	}
	wg.Wait()
	return n
}

func backendProbes(s *directorv1.GetStatusResponse) (uint64, bool) {
	for _, svc := range s.GetServices() {
		for _, b := range svc.GetBackends() {
			return b.GetHealth().GetProbes(), b.GetHealth().GetState() == directorv1.HealthState_HEALTH_STATE_UP
		}
	}
	return 0, false
}

func vipAdvertised(s *directorv1.GetStatusResponse) bool {
	return len(s.GetVips()) == 1 && s.GetVips()[0].GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED
}

// TestFloodCannotTakeProbesDescriptors is issue 12's attack: a local user
// opens thousands of idle connections to the metrics port (and here to the
// API's TCP port too) of a daemon with 1,024 open files. Before the caps
// the daemon ran out of descriptors, probes failed with "too many open
// files" and the VIP was withdrawn. Now each listener holds at most a
// sixteenth of the limit (64), probes go on, the API socket answers, the
// rest of the flood is refused at once, and the held connections are closed
// by the listeners' timeouts.
func TestFloodCannotTakeProbesDescriptors(t *testing.T) {
	if _, err := os.Stat("/usr/bin/prlimit"); err != nil {
		t.Fatal("prlimit (util-linux) is needed to run the daemon with a low open-files limit")
	}
	bin := buildDaemon(t)
	dir := controltest.ShortTempDir(t)
	ca := controltest.NewCA(t, "flood-ca")
	cert, key := controltest.WritePair(t, dir, "server", ca.Issue(t, "directord", true))
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	apiTCP := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfgPath := filepath.Join(dir, "directord.yaml")
	cfg := floodConfig(dir, metrics, apiTCP, vipFor(10), tcpBackend(t), cert, key, caPath)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	const limit, perListener = 1024, 1024 / 16
	d := startDaemonProc(t, filepath.Join(dir, "d.sock"), "prlimit", fmt.Sprintf("--nofile=%d:%d", limit, limit), "--",
		bin, "run", "-config", cfgPath)
	d.waitStatus("the VIP advertised", 15*time.Second, vipAdvertised)
	base := d.openFiles()

	conns := append(flood(t, metrics, 1500), flood(t, apiTCP, 1500)...)

	// Probes go on, the backend stays up and the VIP advertised, and the
	// API socket answers all along.
	st, err := d.status()
	if err != nil {
		t.Fatalf("the API socket during the flood: %v", err)
	}
	before, _ := backendProbes(st)
	d.waitStatus("ten more probes during the flood", 15*time.Second, func(s *directorv1.GetStatusResponse) bool {
		n, up := backendProbes(s)
		if !up || !vipAdvertised(s) {
			t.Fatalf("during the flood: backend up %t, VIP %v", up, s.GetVips())
		}
		return n >= before+10
	})

	// The caps hold: the daemon holds at most 64 connections per listener.
	if n := d.openFiles(); n > base+2*perListener+8 {
		t.Errorf("the daemon holds %d descriptors, %d before the flood: more than the two caps of %d", n, base, perListener)
	}
	if refused := refusedCount(conns); refused < len(conns)-2*perListener {
		t.Errorf("%d of %d flood connections refused, want all but the two caps of %d", refused, len(conns), perListener)
	}
	if logs := d.logs.String(); strings.Contains(logs, "too many open files") || !strings.Contains(logs, "connection limit reached") {
		t.Errorf("want a connection-limit warning and no 'too many open files' in the log")
	}

	// The held connections are closed by the listeners' timeouts (header 5 s
	// on metrics, handshake 10 s on the API), not kept forever.
	waitFor(t, "the held flood connections closed", 30*time.Second, func() bool { return d.openFiles() <= base+4 })
}

// TestOpenFilesLimitRaised: the daemon runs with its soft open-files limit
// raised to the hard one (Go does it at start, to one below the hard limit;
// exec'd checks get the original limit back) and says how it shares it; the
// listener caps are a sixteenth of that limit.
func TestOpenFilesLimitRaised(t *testing.T) {
	bin := buildDaemon(t)
	dir, cfgPath, _ := writeLocalConfig(t, "nofile", 50, "interval: 200ms, timeout: 100ms")
	d := startDaemonProc(t, filepath.Join(dir, "d.sock"), "prlimit", "--nofile=512:2048", "--", bin, "run", "-config", cfgPath)
	d.waitStatus("the VIP advertised", 15*time.Second, vipAdvertised)
	limits, err := os.ReadFile(fmt.Sprintf("/proc/%d/limits", d.pid()))
	if err != nil {
		t.Fatal(err)
	}
	if !regexp.MustCompile(`Max open files\s+2047\s+2048\s`).Match(limits) {
		t.Errorf("the daemon's open-files limit is not raised to the hard limit:\n%s", limits)
	}
	if want := "open-files limit 2047 (hard 2048): health probes keep to half, metrics and api.tcp hold at most 127 connections each"; !strings.Contains(d.logs.String(), want) {
		t.Errorf("the log lacks %q", want)
	}
}
