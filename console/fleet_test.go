package console

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/control/controltest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// This file runs real directord processes with local services on this
// host, for the browser test: each director has its own socket and state
// directory, and all of them check the same backends (listeners of the test
// process) on the same VIPs, like a fleet.

// buildDirectord compiles the daemon once per test.
func buildDirectord(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "directord")
	out, err := exec.Command("go", "build", "-o", bin, "../cmd/directord").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ../cmd/directord: %v\n%s", err, out)
	}
	return bin
}

// backend is a restartable HTTP listener on a fixed loopback port.
type backend struct {
	t    *testing.T
	addr string
	mu   sync.Mutex
	srv  *http.Server
}

func newBackend(t *testing.T) *backend {
	b := &backend{t: t, addr: "127.0.0.1:0"}
	b.up()
	t.Cleanup(b.down)
	return b
}

func (b *backend) port() string { _, p, _ := net.SplitHostPort(b.addr); return p }

func (b *backend) up() {
	b.t.Helper()
	var lis net.Listener
	var err error
	for range 100 { // the port may linger briefly after down
		if lis, err = net.Listen("tcp", b.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		b.t.Fatal(err)
	}
	b.addr = lis.Addr().String()
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	b.mu.Lock()
	b.srv = srv
	b.mu.Unlock()
	go srv.Serve(lis)
}

func (b *backend) down() {
	b.mu.Lock()
	srv := b.srv
	b.srv = nil
	b.mu.Unlock()
	if srv != nil {
		srv.Close()
	}
}

// daemon is one running directord.
type daemon struct {
	name, dir, sock, cfg string
	cmd                  *exec.Cmd
	logs                 *controltest.SyncBuffer
	client               directorv1.DirectorClient
}

// fleetConfig renders a director's file: web on two backends, api on one.
func fleetConfig(name, dir, vipBase string, web1, web2, api *backend, web1Weight int) string {
	return fmt.Sprintf(`# %s of the console test fleet
director: { name: %s, announce: none, hold_down: 200ms, drain_delay: 1s, graceful_shutdown: 0s, linger: 0s, state_dir: %s/state }
api: { socket: %s/d.sock }
metrics: { listen: "" }
services:
  - name: web
    vip: %s.10
    port: 80
    forwarding: local
    min_healthy: 1
    health: { type: http, path: /, interval: 200ms, timeout: 150ms, rise: 1, fall: 2 }
    backends:
      - { address: 127.0.0.1, port: %s, weight: %d }
      - { address: 127.0.0.1, port: %s }
  - name: api
    vip: %s.11
    port: 443
    forwarding: local
    health: { type: tcp, interval: 200ms, timeout: 150ms, rise: 1, fall: 2 }
    backends:
      - { address: 127.0.0.1, port: %s }
`, name, name, dir, dir, vipBase, web1.port(), web1Weight, web2.port(), vipBase, api.port())
}

// startDaemon runs directord until the test ends, with the configuration
// render gives for the daemon's own folder.
func startDaemon(t *testing.T, bin, name string, render func(dir string) string) *daemon {
	t.Helper()
	dir := controltest.ShortTempDir(t)
	d := &daemon{name: name, dir: dir, sock: filepath.Join(dir, "d.sock"), cfg: filepath.Join(dir, "directord.yaml"),
		logs: &controltest.SyncBuffer{}}
	d.write(t, render(dir))
	d.cmd = exec.Command(bin, "run", "-config", d.cfg)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan struct{})
	go func() { d.cmd.Wait(); close(exited) }()
	conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	d.client = directorv1.NewDirectorClient(conn)
	t.Cleanup(func() {
		conn.Close()
		d.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			d.cmd.Process.Kill()
			<-exited
		}
		if t.Failed() {
			t.Logf("%s log:\n%s", name, d.logs.String())
		}
	})
	return d
}

// write replaces the daemon's configuration file.
func (d *daemon) write(t *testing.T, cfg string) {
	t.Helper()
	if err := os.WriteFile(d.cfg, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
}

// status reads the daemon's status through its own API.
func (d *daemon) status(t *testing.T) *directorv1.GetStatusResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	st, err := d.client.GetStatus(ctx, &directorv1.GetStatusRequest{})
	if err != nil {
		t.Fatalf("%s: GetStatus: %v", d.name, err)
	}
	return st
}

// waitStatus polls the daemon's API until cond holds (bounded).
func (d *daemon) waitStatus(t *testing.T, what string, cond func(*directorv1.GetStatusResponse) bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		st, err := d.client.GetStatus(ctx, &directorv1.GetStatusRequest{})
		cancel()
		if err == nil && cond(st) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: timed out waiting for %s (last error %v)", d.name, what, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// events reads every event the daemon holds.
func (d *daemon) events(t *testing.T) []*directorv1.Event {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// A stream from now says in its header how far the log goes.
	now, err := d.client.Watch(ctx, &directorv1.WatchRequest{FromNow: true})
	if err != nil {
		t.Fatal(err)
	}
	md, err := now.Header()
	if err != nil {
		t.Fatal(err)
	}
	var last uint64
	fmt.Sscan(md.Get("director-after-seq")[0], &last)
	stream, err := d.client.Watch(ctx, &directorv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	var out []*directorv1.Event
	for len(out) == 0 || out[len(out)-1].GetSeq() < last {
		msg, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if e := msg.GetEvent(); e != nil {
			out = append(out, e)
		}
	}
	return out
}

// backendOf finds a backend of a service in a status.
func backendOf(st *directorv1.GetStatusResponse, service, port string) *directorv1.Backend {
	for _, s := range st.GetServices() {
		if s.GetName() != service {
			continue
		}
		for _, b := range s.GetBackends() {
			if fmt.Sprint(b.GetPort()) == port {
				return b
			}
		}
	}
	return nil
}
