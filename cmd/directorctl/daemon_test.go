package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control/controltest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// daemonBinary builds directord once, only for the tests that need it, so a
// broken daemon does not hide the CLI's own tests.
var daemonBinary = sync.OnceValues(func() (string, error) {
	dir, err := os.MkdirTemp("", "directord-test")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "directord")
	out, err := exec.Command("go", "build", "-o", bin, "../directord").CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("go build ../directord: %v\n%s", err, out)
	}
	return bin, nil
})

// listener is a restartable HTTP server on a fixed loopback port: the
// health target of a local service.
type listener struct {
	t    *testing.T
	addr string
	srv  *http.Server
}

func startListener(t *testing.T, addr string) *listener {
	t.Helper()
	l := &listener{t: t, addr: addr}
	l.up()
	t.Cleanup(l.down)
	return l
}

func (l *listener) up() {
	l.t.Helper()
	var lis net.Listener
	var err error
	for range 50 { // the port may linger briefly after down
		if lis, err = net.Listen("tcp", l.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		l.t.Fatal(err)
	}
	l.addr = lis.Addr().String()
	l.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	go l.srv.Serve(lis)
}

func (l *listener) down() {
	if l.srv != nil {
		l.srv.Close()
		l.srv = nil
	}
}

func (l *listener) port() string { _, p, _ := net.SplitHostPort(l.addr); return p }

// daemonConfig renders a local-only configuration: two services whose VIPs
// are loopback addresses unique to this test process, each following one
// listener. interval tunes the api check so reloads have something to change.
func daemonConfig(dir, metrics string, web, api *listener, vipBase string, apiInterval string, withAPI bool) string {
	c := fmt.Sprintf(`director:
  name: e2e
  announce: none
  hold_down: 200ms
  drain_delay: 1s
  graceful_shutdown: 0s
  linger: 500ms
  state_dir: %[1]s/state
api:
  socket: %[1]s/d.sock
metrics:
  listen: %s
services:
  - name: web
    vip: %s.10
    port: 80
    forwarding: local
    health: { type: http, path: /, interval: 200ms, timeout: 150ms, rise: 1, fall: 2 }
    backends:
      - { address: 127.0.0.1, port: %s }
`, dir, metrics, vipBase, web.port())
	if withAPI {
		c += fmt.Sprintf(`  - name: api
    vip: %s.11
    port: 81
    forwarding: local
    health: { type: tcp, interval: %s, timeout: 150ms, rise: 1, fall: 2 }
    backends:
      - { address: 127.0.0.1, port: %s }
`, vipBase, apiInterval, api.port())
	}
	return c
}

// daemonStatus reads the status over the API socket (directorctl's JSON
// is made for jq, not for protojson; TestJSONForJq checks it).
func daemonStatus(t *testing.T, sock string) (*directorv1.GetStatusResponse, bool) {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	s, err := directorv1.NewDirectorClient(conn).GetStatus(ctx, &directorv1.GetStatusRequest{})
	return s, err == nil
}

// waitStatus polls directorctl status until cond holds (bounded).
func waitStatus(t *testing.T, sock, what string, cond func(*directorv1.GetStatusResponse) bool) *directorv1.GetStatusResponse {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		s, ok := daemonStatus(t, sock)
		if ok && cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s; last status: %v", what, s)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func vipOf(s *directorv1.GetStatusResponse, addr string) *directorv1.VIP {
	for _, v := range s.GetVips() {
		if v.GetAddress() == addr {
			return v
		}
	}
	return nil
}

func backendIn(s *directorv1.GetStatusResponse, service string) *directorv1.Backend {
	for _, svc := range s.GetServices() {
		if svc.GetName() == service && len(svc.GetBackends()) > 0 {
			return svc.GetBackends()[0]
		}
	}
	return nil
}

// metricValue scrapes one series from the daemon's metrics endpoint.
func metricValue(t *testing.T, addr, series string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindSubmatch(body)
	if m == nil {
		t.Fatalf("no series %s in the scrape", series)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestRealDaemon starts the real directord with local services on this
// machine and drives it with the real directorctl (and a reflection-only
// client): status follows a listener, drain and enable, overrides survive
// reloads by SIGHUP and by the API, a dry run changes nothing, a rollback
// restores an older file, and the metrics move.
func TestRealDaemon(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("directord binds VIPs to lo, which needs root (CAP_NET_ADMIN); run as root")
	}
	bin, err := daemonBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := controltest.ShortTempDir(t)
	sock := filepath.Join(dir, "d.sock")
	web := startListener(t, "127.0.0.1:0")
	api := startListener(t, "127.0.0.1:0")
	metricsAddr := startListener(t, "127.0.0.1:0") // reserve a free port for metrics
	metricsAddr.down()
	vipBase := fmt.Sprintf("127.77.%d", os.Getpid()%250+1)
	webVIP, apiVIP := vipBase+".10", vipBase+".11"
	cfgPath := filepath.Join(dir, "directord.yaml")
	write := func(c string) {
		if err := os.WriteFile(cfgPath, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	v1 := daemonConfig(dir, metricsAddr.addr, web, api, vipBase, "200ms", true)
	write(v1)

	var logs bytes.Buffer
	var logMu sync.Mutex
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	cmd.Stdout = &lockedWriter{w: &logs, mu: &logMu}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	var exitErr error
	go func() { exitErr = cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		select {
		case <-exited:
		default:
			cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			logMu.Lock()
			t.Logf("directord log:\n%s", logs.String())
			logMu.Unlock()
		}
	})

	// 1. Status matches reality: both listeners are up, so both VIPs are.
	s := waitStatus(t, sock, "both VIPs advertised", func(s *directorv1.GetStatusResponse) bool {
		return vipOf(s, webVIP).GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED &&
			vipOf(s, apiVIP).GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED
	})
	if b := backendIn(s, "web"); b.GetHealth().GetState() != directorv1.HealthState_HEALTH_STATE_UP ||
		b.GetHealth().GetLatency().AsDuration() <= 0 || b.GetEffectiveWeight() != 1 {
		t.Errorf("web backend = %v", b)
	}
	if c := s.GetConfig(); c.GetVersion() != 1 || c.GetDigest() != config.Digest([]byte(v1)) {
		t.Errorf("config = %v, want version 1 with the file's digest", c)
	}

	// The listener goes down: the backend is down and the VIP withdrawn,
	// with the reason; it comes back with the listener.
	web.down()
	s = waitStatus(t, sock, "web withdrawn", func(s *directorv1.GetStatusResponse) bool {
		return vipOf(s, webVIP).GetState() == directorv1.VIPState_VIP_STATE_WITHDRAWN
	})
	if r := vipOf(s, webVIP).GetReason(); !strings.HasPrefix(r, "below min_healthy 0/1") {
		t.Errorf("withdraw reason = %q", r)
	}
	if b := backendIn(s, "web"); b.GetHealth().GetState() != directorv1.HealthState_HEALTH_STATE_DOWN || b.GetHealth().GetLastError() == "" {
		t.Errorf("web backend after the listener stopped = %v", b.GetHealth())
	}
	if vipOf(s, apiVIP).GetState() != directorv1.VIPState_VIP_STATE_ADVERTISED {
		t.Errorf("api withdrawn too")
	}
	web.up()
	waitStatus(t, sock, "web advertised again", func(s *directorv1.GetStatusResponse) bool {
		return vipOf(s, webVIP).GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED
	})

	// 2. Drain: weight 0, the VIP (one backend) is withdrawn, api untouched.
	if out, stderr, code := ctl(t, nil, "--socket", sock, "drain", "127.0.0.1", "--service", "web", "--reason", "e2e"); code != 0 {
		t.Fatalf("drain: exit %d %s %s", code, out, stderr)
	}
	s = waitStatus(t, sock, "web drained", func(s *directorv1.GetStatusResponse) bool {
		return backendIn(s, "web").GetDraining() && vipOf(s, webVIP).GetState() == directorv1.VIPState_VIP_STATE_WITHDRAWN
	})
	if b := backendIn(s, "web"); b.GetEffectiveWeight() != 0 || b.GetOverride() != "drained by operator: e2e" {
		t.Errorf("drained backend = %v", b)
	}
	if b := backendIn(s, "api"); b.GetDraining() || vipOf(s, apiVIP).GetState() != directorv1.VIPState_VIP_STATE_ADVERTISED {
		t.Errorf("api affected by a drain scoped to web: %v", b)
	}

	// 3. Reloads keep the override: by SIGHUP, then by the API.
	v2 := daemonConfig(dir, metricsAddr.addr, web, api, vipBase, "300ms", true)
	write(v2)
	cmd.Process.Signal(syscall.SIGHUP)
	s = waitStatus(t, sock, "version 2", func(s *directorv1.GetStatusResponse) bool { return s.GetConfig().GetVersion() == 2 })
	if !backendIn(s, "web").GetDraining() || len(s.GetOverrides()) != 1 {
		t.Errorf("after SIGHUP the drain is gone: %v", s.GetOverrides())
	}
	v3 := daemonConfig(dir, metricsAddr.addr, web, api, vipBase, "250ms", true)
	write(v3)
	if out, _, code := ctl(t, nil, "--socket", sock, "reload"); code != 0 || !strings.Contains(out, "loaded configuration version 3") {
		t.Fatalf("reload: exit %d\n%s", code, out)
	}
	s = waitStatus(t, sock, "version 3", func(s *directorv1.GetStatusResponse) bool { return s.GetConfig().GetVersion() == 3 })
	if !backendIn(s, "web").GetDraining() {
		t.Errorf("after an API reload the drain is gone")
	}
	// A changed check is a new health target: api waits for its verdict.
	waitStatus(t, sock, "api advertised after the reload", func(s *directorv1.GetStatusResponse) bool {
		return vipOf(s, apiVIP).GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED
	})

	// 4. Dry run of a file without api: the route would go, nothing changes.
	write(daemonConfig(dir, metricsAddr.addr, web, api, vipBase, "250ms", false))
	out, _, code := ctl(t, nil, "--socket", sock, "reload", "--dry-run")
	if code != 0 || !regexp.MustCompile(`remove\s+route\s+`+regexp.QuoteMeta(apiVIP)+`/32`).MatchString(out) ||
		!regexp.MustCompile(`remove\s+service\s+tcp/`+regexp.QuoteMeta(apiVIP)).MatchString(out) {
		t.Fatalf("reload --dry-run: exit %d\n%s", code, out)
	}
	time.Sleep(300 * time.Millisecond)
	s = waitStatus(t, sock, "status", func(*directorv1.GetStatusResponse) bool { return true })
	if s.GetConfig().GetVersion() != 3 || vipOf(s, apiVIP).GetState() != directorv1.VIPState_VIP_STATE_ADVERTISED {
		t.Errorf("dry run changed something: version %d, api %v", s.GetConfig().GetVersion(), vipOf(s, apiVIP))
	}
	// A broken file is refused (exit 1) and the running version stays.
	write("services: [broken\n")
	if _, stderr, code := ctl(t, nil, "--socket", sock, "reload"); code != 1 || !strings.Contains(stderr, "directord.yaml has errors; nothing changed") ||
		strings.Contains(stderr, "reload: reload:") {
		t.Errorf("reload of a broken file: exit %d\n%s", code, stderr)
	}
	// announce: none gives no router configuration: a precondition that
	// says so (it was INTERNAL).
	if _, stderr, code := ctl(t, nil, "--socket", sock, "router-config"); code != 1 ||
		!strings.Contains(stderr, "router-config: the running configuration gives no router configuration: no director announces") ||
		strings.Contains(stderr, "Internal") {
		t.Errorf("router-config of an announce: none director: exit %d\n%s", code, stderr)
	}

	// 5. Rollback to version 1 loads it again as version 4.
	if out, _, code := ctl(t, nil, "--socket", sock, "rollback", "1"); code != 0 || !strings.Contains(out, "now version 4 ("+config.Digest([]byte(v1))+")") {
		t.Fatalf("rollback 1: exit %d\n%s", code, out)
	}
	s = waitStatus(t, sock, "version 4", func(s *directorv1.GetStatusResponse) bool { return s.GetConfig().GetVersion() == 4 })
	if s.GetConfig().GetDigest() != config.Digest([]byte(v1)) || !backendIn(s, "web").GetDraining() {
		t.Errorf("after rollback: %v, drain kept %t", s.GetConfig(), backendIn(s, "web").GetDraining())
	}

	// 6. A weight set on one service and cleared the way the help shows
	// (the clear used to print success and change nothing).
	if _, _, code := ctl(t, nil, "--socket", sock, "weight", "127.0.0.1", "7", "--service", "api"); code != 0 {
		t.Fatalf("weight: exit %d", code)
	}
	waitStatus(t, sock, "api weight 7", func(s *directorv1.GetStatusResponse) bool { return backendIn(s, "api").GetEffectiveWeight() == 7 })
	if out, _, code := ctl(t, nil, "--socket", sock, "weight", "127.0.0.1", "--clear"); code != 0 || !strings.Contains(out, "cleared the weight override api/127.0.0.1:* weight 7") {
		t.Fatalf("weight --clear: exit %d %s", code, out)
	}
	waitStatus(t, sock, "api weight back to 1", func(s *directorv1.GetStatusResponse) bool { return backendIn(s, "api").GetEffectiveWeight() == 1 })

	// Enable: the backend returns and the VIP is advertised again.
	if _, _, code := ctl(t, nil, "--socket", sock, "enable", "127.0.0.1", "--service", "web"); code != 0 {
		t.Fatalf("enable: exit %d", code)
	}
	waitStatus(t, sock, "web advertised after enable", func(s *directorv1.GetStatusResponse) bool {
		return !backendIn(s, "web").GetDraining() && vipOf(s, webVIP).GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED
	})

	// 7. Metrics move: health checks keep counting under the probes'
	// traffic, and the config series follow the reloads.
	series := `directord_checks_total{result="success",type="http"}`
	// Two more probes take 400 ms; a loaded machine (the health checker
	// probes less often when it cannot keep up) gets 10 s.
	before := metricValue(t, metricsAddr.addr, series)
	after := before
	for deadline := time.Now().Add(10 * time.Second); after < before+2 && time.Now().Before(deadline); {
		time.Sleep(100 * time.Millisecond)
		after = metricValue(t, metricsAddr.addr, series)
	}
	if after < before+2 {
		t.Errorf("%s moved from %v to %v in 10s with a 200ms interval", series, before, after)
	}
	if v := metricValue(t, metricsAddr.addr, "directord_config_version"); v != 4 {
		t.Errorf("directord_config_version = %v, want 4", v)
	}
	if v := metricValue(t, metricsAddr.addr, `directord_vip_advertised{vip="`+webVIP+`"}`); v != 1 {
		t.Errorf("web VIP advertised metric = %v", v)
	}

	// 8. A generic client through reflection sees the same daemon.
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	r, err := controltest.Reflect(ctx, conn, "director.v1.Director")
	if err != nil {
		t.Fatal(err)
	}
	dyn, err := r.Invoke(ctx, conn, "director.v1.Director", "GetStatus")
	if err != nil {
		t.Fatal(err)
	}
	if got := dyn.Get(dyn.Descriptor().Fields().ByName("director")).String(); got != "e2e" {
		t.Errorf("reflection GetStatus director = %q", got)
	}

	// SIGTERM: a clean exit.
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-exited:
		if exitErr != nil {
			t.Errorf("directord exit: %v", exitErr)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("directord did not exit within 10s of SIGTERM")
	}
}

// lockedWriter serialises writes to a shared buffer.
type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
