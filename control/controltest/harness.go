package controltest

import (
	"context"
	"github.com/anycast-director/director/internal/syncbuf"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control"
	"github.com/anycast-director/director/ipvs"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
	"github.com/anycast-director/director/routing/routerconfig"
)

// BaseConfig has two IPVS services sharing backend 10.0.2.21 on two ports.
const BaseConfig = `director:
  name: t1
  announce: none
  hold_down: 0s
  drain_delay: 1s
  resync_interval: 1s
api:
  keep_configs: 3
services:
  - name: web
    vip: 198.18.0.10
    port: 80
    scheduler: mh
    health: { type: tcp, interval: 1s, timeout: 500ms }
    backends:
      - { address: 10.0.2.21 }
      - { address: 10.0.2.22 }
  - name: api
    vip: 198.18.0.11
    port: 443
    scheduler: mh
    health: { type: tcp, interval: 1s, timeout: 500ms }
    backends:
      - { address: 10.0.2.21, weight: 2 }
      - { address: 10.0.2.31 }
`

// SecondConfig adds backend 10.0.2.23 to web and removes api.
const SecondConfig = `director:
  name: t1
  announce: none
  hold_down: 0s
  drain_delay: 1s
  resync_interval: 1s
api:
  keep_configs: 3
services:
  - name: web
    vip: 198.18.0.10
    port: 80
    scheduler: mh
    health: { type: tcp, interval: 1s, timeout: 500ms }
    backends:
      - { address: 10.0.2.21 }
      - { address: 10.0.2.22 }
      - { address: 10.0.2.23 }
`

// WebKey is BaseConfig's web service.
func WebKey() ipvs.Key {
	return ipvs.Key{VIP: netip.MustParseAddr("198.18.0.10"), Port: 80, Protocol: 6}
}

// APIKey is BaseConfig's api service.
func APIKey() ipvs.Key {
	return ipvs.Key{VIP: netip.MustParseAddr("198.18.0.11"), Port: 443, Protocol: 6}
}

// ParseConfig parses a test configuration or fails the test.
func ParseConfig(t testing.TB, name, yaml string) *config.Config {
	t.Helper()
	cfg, err := config.Parse(name, []byte(yaml))
	if err != nil {
		t.Fatalf("test configuration %s: %v", name, err)
	}
	cfg.Source = name
	return cfg
}

// Options shape a Harness; the zero value runs BaseConfig.
type Options struct {
	// Config is the initial configuration file's content (BaseConfig if "").
	Config string
	// Loop tunes the announcer loop (a small event log, for example).
	Loop announcer.Options
	// Server adjusts the server options before the server starts.
	Server func(*control.ServerOptions)
}

// Harness is a real announcer loop on fakes behind a real control server on
// a Unix socket, and a client connected to it. Everything stops in the
// test's cleanup.
type Harness struct {
	t testing.TB
	// Loop is the real announcer loop.
	Loop *announcer.Loop
	// World holds the fakes' state.
	World *World
	// Server is the control server.
	Server *control.Server
	// Sock is the Unix socket path.
	Sock string
	// Conn and Client are a client connection over Sock.
	Conn   *grpc.ClientConn
	Client directorv1.DirectorClient
	// Logs collects the server's log (the audit trail).
	Logs *SyncBuffer

	mu       sync.Mutex
	file     string // the "configuration file" the Reload hook re-reads
	stopOnce sync.Once
	stop     func()
}

// ShortTempDir returns a directory whose path fits a Unix socket address
// (t.TempDir paths can exceed the 108-byte limit).
func ShortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "dctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// Start runs a loop and a server and waits for the first full pass.
func Start(t testing.TB, o Options) *Harness {
	t.Helper()
	if o.Config == "" {
		o.Config = BaseConfig
	}
	h := &Harness{t: t, World: NewWorld(t), file: o.Config, Logs: &SyncBuffer{}}
	cfg := ParseConfig(t, "director.yaml", o.Config)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	h.Loop = announcer.New(cfg, h.World.Deps(), quiet, o.Loop)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); h.Loop.Run(ctx) }()

	h.Sock = filepath.Join(ShortTempDir(t), "run", "d.sock")
	opts := control.ServerOptions{
		Director: h.Loop,
		Reload:   h.reload,
		RouterConfig: func(flavor string, opts routerconfig.Options) ([]byte, error) {
			return routerconfig.Generate(flavor, []*config.Config{h.Loop.Running()}, opts)
		},
		Logger: slog.New(slog.NewTextHandler(h.Logs, nil)),
		API:    config.API{Socket: h.Sock, KeepConfigs: 3},
	}
	if o.Server != nil {
		o.Server(&opts)
	}
	h.Sock = opts.API.Socket
	h.Server = control.NewServer(opts)
	serveErr := make(chan error, 1)
	go func() { defer wg.Done(); serveErr <- h.Server.Serve(ctx) }()
	<-h.Server.Ready()
	if len(h.Server.Addrs()) == 0 {
		cancel()
		wg.Wait()
		t.Fatalf("Serve: %v", <-serveErr)
	}
	conn, err := grpc.NewClient("unix://"+h.Sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	h.Conn, h.Client = conn, directorv1.NewDirectorClient(conn)
	h.stop = func() {
		cancel()
		wg.Wait()
		conn.Close()
		if err := <-serveErr; err != nil {
			t.Errorf("Serve returned %v after a clean stop", err)
		}
	}
	t.Cleanup(h.Stop)
	h.WaitFor("the first pass", func(s *announcer.Status) bool { return s.Passes > 0 && !s.Learning })
	return h
}

// Stop stops the server and the loop and waits for both (also done by the
// test's cleanup).
func (h *Harness) Stop() { h.stopOnce.Do(h.stop) }

// reload is the daemon's Reload hook: it re-reads the harness's file.
func (h *Harness) reload(ctx context.Context, dryRun bool) ([]announcer.Change, announcer.ConfigVersion, error) {
	h.mu.Lock()
	data := h.file
	h.mu.Unlock()
	cfg, err := config.Parse("director.yaml", []byte(data))
	if err != nil {
		// Wrapped as the daemon does.
		return nil, h.Loop.Status().Config, &control.ConfigFileError{Path: "director.yaml", Err: err}
	}
	cfg.Source = "director.yaml"
	changes, err := h.Loop.Preview(ctx, cfg)
	if err != nil || dryRun {
		return changes, h.Loop.Status().Config, err
	}
	v, err := h.Loop.Reload(ctx, cfg)
	return changes, v, err
}

// SetFile replaces the configuration file the Reload hook reads.
func (h *Harness) SetFile(yaml string) {
	h.mu.Lock()
	h.file = yaml
	h.mu.Unlock()
}

// WaitFor polls the loop's status until cond holds (bounded: 5 s).
func (h *Harness) WaitFor(what string, cond func(*announcer.Status) bool) *announcer.Status {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := h.Loop.Status()
		if cond(s) {
			return s
		}
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; world: %s", what, h.World)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// WaitWorld polls the fakes until cond holds (bounded: 5 s).
func (h *Harness) WaitWorld(what string, cond func() bool) {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			h.t.Fatalf("timed out waiting for %s; world: %s", what, h.World)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Backend finds a backend in a status snapshot.
func Backend(s *announcer.Status, service, addr string) (announcer.BackendStatus, bool) {
	sv, ok := s.Service(service)
	if !ok {
		return announcer.BackendStatus{}, false
	}
	for _, b := range sv.Backends {
		if b.Address.String() == addr {
			return b, true
		}
	}
	return announcer.BackendStatus{}, false
}

// SyncBuffer is a goroutine-safe log sink the tests read.
type SyncBuffer = syncbuf.Buffer
