//go:build !vm

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/control/controltest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// daemonProc is a directord process (or a wrapper around one, such as
// prlimit) with its API socket, stopped (SIGKILL if still running) and its
// log shown on failure in the test's cleanup. (startDaemon in run_test.go
// runs the plain daemon; these tests need the wrapper and the socket.)
type daemonProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	logs   *syncBuffer
	exited chan struct{}
	err    error // the exit status, once exited is closed
	sock   string
}

// startDaemonProc runs argv (directord run ... or a wrapper such as prlimit
// around it) with the API socket sock.
func startDaemonProc(t *testing.T, sock string, argv ...string) *daemonProc {
	t.Helper()
	d := &daemonProc{t: t, logs: &syncBuffer{}, exited: make(chan struct{}), sock: sock}
	d.cmd = exec.Command(argv[0], argv[1:]...)
	d.cmd.Stdout, d.cmd.Stderr = d.logs, d.logs
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		select {
		case <-d.exited:
		default:
			d.cmd.Process.Kill()
			<-d.exited
		}
		if t.Failed() {
			t.Logf("directord log:\n%s", d.logs.String())
		}
	})
	return d
}

// pid is the daemon's process ID.
func (d *daemonProc) pid() int { return d.cmd.Process.Pid }

// status asks the daemon over its API socket, within 5 s.
func (d *daemonProc) status() (*directorv1.GetStatusResponse, error) {
	conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return nil, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return directorv1.NewDirectorClient(conn).GetStatus(ctx, &directorv1.GetStatusRequest{})
}

// waitStatus polls the status until cond holds, failing after d.
func (d *daemonProc) waitStatus(what string, timeout time.Duration, cond func(*directorv1.GetStatusResponse) bool) *directorv1.GetStatusResponse {
	d.t.Helper()
	var last *directorv1.GetStatusResponse
	var lastErr error
	waitFor(d.t, what, timeout, func() bool {
		last, lastErr = d.status()
		return lastErr == nil && cond(last)
	})
	return last
}

// signal sends sig and waits up to timeout for the process to exit; it
// returns how long that took.
func (d *daemonProc) signalAndWait(sig syscall.Signal, timeout time.Duration) time.Duration {
	d.t.Helper()
	start := time.Now()
	d.cmd.Process.Signal(sig)
	select {
	case <-d.exited:
		return time.Since(start)
	case <-time.After(timeout):
		d.t.Fatalf("directord did not exit within %s of %s", timeout, sig)
		return 0
	}
}

// openFiles counts the daemon's open descriptors.
func (d *daemonProc) openFiles() int {
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", d.pid()))
	if err != nil {
		d.t.Fatalf("read the daemon's descriptors: %v", err)
	}
	return len(fds)
}

// vipFor returns a loopback VIP unique to this test process, so tests of
// other packages running at the same time do not collide.
func vipFor(last int) string {
	return fmt.Sprintf("127.66.%d.%d", os.Getpid()%250+1, last)
}

// tcpBackend is a listener that accepts and closes connections, the target
// of a tcp health check; it stops with the test.
func tcpBackend(t *testing.T) int {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	return lis.Addr().(*net.TCPAddr).Port
}

// startLocalDaemon starts the built daemon named name with one local
// service on vipFor(vip), tcp-checked with timing ("interval: 1s, timeout:
// 500ms"), and waits until its VIP is advertised. It returns the daemon, its
// folder (API socket d.sock, state in state/), the configuration file and
// the configuration written there.
func startLocalDaemon(t *testing.T, name string, vip int, timing string) (d *daemonProc, dir, cfgPath, cfg string) {
	t.Helper()
	bin := buildDaemon(t)
	dir, cfgPath, cfg = writeLocalConfig(t, name, vip, timing)
	d = startDaemonProc(t, filepath.Join(dir, "d.sock"), bin, "run", "-config", cfgPath)
	d.waitStatus("the VIP advertised", 15*time.Second, vipAdvertised)
	return d, dir, cfgPath, cfg
}

// writeLocalConfig writes startLocalDaemon's configuration (one service,
// local forwarding, one tcp backend on loopback, health timing as given) into
// a fresh directory and returns the directory, the file and its text.
func writeLocalConfig(t *testing.T, name string, vip int, timing string) (dir, cfgPath, cfg string) {
	t.Helper()
	dir = controltest.ShortTempDir(t)
	cfgPath = filepath.Join(dir, "directord.yaml")
	cfg = fmt.Sprintf(`director: { name: %[4]s, announce: none, hold_down: 0s, graceful_shutdown: 0s, linger: 0s, state_dir: %[1]s/state }
api: { socket: %[1]s/d.sock }
metrics: { listen: "" }
services:
  - name: web
    vip: %[2]s
    port: 80
    forwarding: local
    health: { type: tcp, %[5]s, rise: 1, fall: 2 }
    backends: [ { address: 127.0.0.1, port: %[3]d } ]
`, dir, vipFor(vip), tcpBackend(t), name, timing)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, cfgPath, cfg
}
