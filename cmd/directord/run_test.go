//go:build !vm

package main

import (
	"bytes"
	"fmt"
	"github.com/anycast-director/director/internal/syncbuf"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildDaemon compiles directord once per test binary run.
func buildDaemon(t testing.TB) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "directord")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// syncBuffer is a goroutine-safe log sink.
type syncBuffer = syncbuf.Buffer

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s", d, what)
}

// scrape returns the metrics page.
func scrape(addr string) string {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// okServer serves "ok" over HTTP on 127.0.0.1 until the test ends or it is
// closed; it returns the server and its port.
func okServer(t *testing.T) (*http.Server, int) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return srv, lis.Addr().(*net.TCPAddr).Port
}

// testDaemon is a directord started by startDaemon.
type testDaemon struct {
	cmd    *exec.Cmd
	exited chan struct{} // closed once it exited; err is then its exit error
	err    error
}

// startDaemon starts `directord run` on cfg with its output in logs, dumps
// the logs when the test failed, and stops it at the end of the test if it
// still runs (SIGTERM, then SIGKILL after 10 s).
func startDaemon(t *testing.T, bin, cfg string, logs *syncBuffer) *testDaemon {
	t.Helper()
	d := &testDaemon{cmd: exec.Command(bin, "run", "-config", cfg), exited: make(chan struct{})}
	d.cmd.Stdout, d.cmd.Stderr = logs, logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.signal(syscall.SIGTERM)
		if d.wait(10*time.Second) != nil {
			d.signal(syscall.SIGKILL)
			<-d.exited
		}
		if t.Failed() {
			t.Logf("directord (pid %d) log:\n%s", d.pid(), logs.String())
		}
	})
	return d
}

// pid is the daemon's process ID.
func (d *testDaemon) pid() int { return d.cmd.Process.Pid }

// signal sends sig unless the daemon has exited.
func (d *testDaemon) signal(sig syscall.Signal) {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Signal(sig)
	}
}

// wait waits up to timeout for the daemon to exit and returns its exit
// error, or an error saying it still runs.
func (d *testDaemon) wait(timeout time.Duration) error {
	select {
	case <-d.exited:
		return d.err
	case <-time.After(timeout):
		return fmt.Errorf("directord (pid %d) still runs after %s", d.pid(), timeout)
	}
}

// TestRunLocalService is the daemon's acceptance on a kernel without IPVS: a
// local service follows a real listener, a broken reload keeps the running
// configuration, and SIGTERM exits 0 within graceful + linger + 1 s.
func TestRunLocalService(t *testing.T) {
	bin := buildDaemon(t)
	dir := t.TempDir()
	srv, port := okServer(t)

	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfgPath := filepath.Join(dir, "directord.yaml")
	cfg := fmt.Sprintf(`director:
  name: t1
  announce: none
  hold_down: 500ms
  drain_delay: 1s
  graceful_shutdown: 0s
  linger: 1s
  state_dir: %[1]s/state
api:
  socket: %[1]s/d.sock
metrics:
  listen: %s
services:
  - name: web
    vip: 127.0.0.10
    port: 80
    forwarding: local
    health: { type: http, path: /, interval: 200ms, timeout: 100ms, rise: 1, fall: 2 }
    backends:
      - { address: 127.0.0.1, port: %d }
`, dir, metrics, port)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
		if t.Failed() {
			t.Logf("directord log:\n%s", logs.String())
		}
	}()

	advertised := `directord_vip_advertised{vip="127.0.0.10"} 1`
	waitFor(t, "the VIP to be advertised", 10*time.Second, func() bool { return strings.Contains(scrape(metrics), advertised) })
	if page := scrape(metrics); !strings.Contains(page, `directord_backend_health_state`) {
		t.Errorf("metrics lack backend health:\n%s", page)
	}

	// The listener goes away: withdrawn within fall x interval (+ slack).
	srv.Close()
	start := time.Now()
	waitFor(t, "the VIP to be withdrawn", 5*time.Second, func() bool {
		return strings.Contains(scrape(metrics), `directord_vip_advertised{vip="127.0.0.10"} 0`)
	})
	if took := time.Since(start); took > 2*200*time.Millisecond+time.Second {
		t.Errorf("withdraw took %s, want within fall x interval + 1s", took)
	}

	// A broken file on SIGHUP is rejected and the old configuration stays.
	if err := os.WriteFile(cfgPath, []byte(cfg+"  - name: [broken\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd.Process.Signal(syscall.SIGHUP)
	waitFor(t, "the reload to be rejected", 5*time.Second, func() bool {
		return strings.Contains(logs.String(), "reload rejected; the running configuration stays")
	})
	if !strings.Contains(logs.String(), cfgPath+":") {
		t.Errorf("the rejection does not name the file and line:\n%s", logs.String())
	}
	if page := scrape(metrics); !strings.Contains(page, "directord_config_version 1") ||
		!strings.Contains(page, "directord_config_last_reload_successful 0") {
		t.Errorf("after a rejected reload, want version 1 and last reload failed")
	}

	// SIGTERM: exit 0 within graceful (0s) + linger (1s) + 1s.
	start = time.Now()
	cmd.Process.Signal(syscall.SIGTERM)
	select {
	case err := <-exited:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("directord did not exit within 5s of SIGTERM")
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("SIGTERM to exit took %s, want at most linger + 1s = 2s", took)
	}
	if _, err := os.Stat(filepath.Join(dir, "d.sock")); err == nil {
		t.Errorf("the API socket was left behind")
	}
}

func TestCheckConfigExitCodes(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"check-config", "../../examples/directord.yaml"}, &out, &errb); code != exitOK {
		t.Fatalf("example config: exit %d: %s", code, errb.String())
	}
	for _, want := range []string{"-A -t 198.18.0.10:80 -s mh -b mh-fallback,mh-port", "198.18.0.10/32", "health targets:"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("check-config output lacks %q", want)
		}
	}
	bad, _ := filepath.Glob("../../config/testdata/bad/*.yaml")
	if len(bad) == 0 {
		t.Fatal("no bad configs found")
	}
	for _, f := range bad {
		out.Reset()
		errb.Reset()
		if code := run([]string{"check-config", f}, &out, &errb); code != exitUsage {
			t.Errorf("%s: exit %d, want 2", f, code)
		}
		if !strings.Contains(errb.String(), f+":") {
			t.Errorf("%s: errors do not name the file and a line:\n%s", f, errb.String())
		}
	}
	if code := run([]string{"check-config"}, &out, &errb); code != exitUsage {
		t.Errorf("no file: exit %d, want 2", code)
	}
}
