// Package control serves the director.v1 gRPC API: status, a resumable event
// stream and operator overrides on top of the announcer loop, plus reloads,
// rollbacks and the router-side configuration through hooks the daemon
// provides. It listens on a Unix socket (mode 0600) and, optionally, on TCP
// with mutual TLS only; every mutating call is logged with the caller's
// identity (peer credentials on the socket, certificate subject on TCP).
package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/reflection"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control/connlimit"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
	"github.com/anycast-director/director/routing/routerconfig"
)

// Director is what the API needs from the announcer loop. *announcer.Loop
// satisfies it; tests may substitute their own.
type Director interface {
	// Status returns the latest immutable snapshot.
	Status() *announcer.Status
	// Events returns the event log Watch streams from.
	Events() *announcer.EventLog
	// DrainBackend sets matching backends to weight 0.
	DrainBackend(ctx context.Context, ref announcer.BackendRef, note announcer.Note) error
	// EnableBackend removes the drain set with exactly ref.
	EnableBackend(ctx context.Context, ref announcer.BackendRef, note announcer.Note) error
	// SetWeight overrides matching backends' weight (negative clears).
	SetWeight(ctx context.Context, ref announcer.BackendRef, weight int, note announcer.Note) error
	// DisableVIP gracefully withdraws vip.
	DisableVIP(ctx context.Context, vip netip.Addr, note announcer.Note) error
	// EnableVIP lifts DisableVIP.
	EnableVIP(ctx context.Context, vip netip.Addr, note announcer.Note) error
	// DrainDirector withdraws every VIP while IPVS keeps forwarding.
	DrainDirector(ctx context.Context, note announcer.Note) error
	// UndrainDirector lifts DrainDirector.
	UndrainDirector(ctx context.Context, note announcer.Note) error
	// Rollback re-applies a kept configuration (0: the previous one).
	Rollback(ctx context.Context, version int) (announcer.ConfigVersion, error)
	// History lists the kept configurations, oldest first.
	History(ctx context.Context) ([]announcer.ConfigVersion, error)
}

// ServerOptions configure a Server. Director and API are required; the hooks
// may be nil, and their calls then answer Unimplemented.
type ServerOptions struct {
	// Director is the announcer loop.
	Director Director
	// Reload re-reads the configuration file (the daemon owns the file and the
	// parsing); with dryRun it only previews. It returns the plan and the
	// running (or new) version.
	Reload func(ctx context.Context, dryRun bool) ([]announcer.Change, announcer.ConfigVersion, error)
	// Rollback re-applies a kept configuration (0: the previous one) and
	// writes it to the configuration file (the daemon owns the file); nil
	// rolls back with Director.Rollback and leaves the file alone.
	Rollback func(ctx context.Context, version int) (RollbackResult, error)
	// RouterConfig renders the router side of the peering ("frr" or "bird")
	// for the running configuration; opts describe the router.
	RouterConfig func(flavor string, opts routerconfig.Options) ([]byte, error)
	// Logger receives the audit log of mutating calls and listener events.
	Logger *slog.Logger
	// API holds the socket path and the optional mTLS listener.
	API config.API
	// Now is the clock used for override expiries (time.Now by default).
	Now func() time.Time
}

// Server is the gRPC control endpoint. Serve runs it; one Server serves one
// Unix socket and at most one TCP listener, once.
type Server struct {
	opts ServerOptions
	log  *slog.Logger
	svc  *service

	served atomic.Bool
	mu     sync.Mutex
	addrs  []net.Addr // bound listener addresses, for tests and logs
	ready  chan struct{}
}

// NewServer builds a Server; nothing listens until Serve.
func NewServer(opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Server{opts: opts, log: opts.Logger, ready: make(chan struct{})}
	s.svc = &service{opts: opts, log: opts.Logger, stopping: make(chan struct{}), epoch: newEpoch(opts.Now())}
	return s
}

// newEpoch names one daemon instance: random bits, or the start time if the
// system has no randomness to give.
func newEpoch(now time.Time) string {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return strconv.FormatInt(now.UnixNano(), 36)
	}
	return hex.EncodeToString(b[:])
}

// Ready is closed once every listener is bound (or Serve failed to bind).
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addrs returns the bound listener addresses (the Unix socket first) once
// Ready is closed.
func (s *Server) Addrs() []net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]net.Addr(nil), s.addrs...)
}

// Serve listens on the Unix socket and, if configured, on TCP with mTLS,
// and serves until ctx ends. It returns nil after a clean stop, or the
// first listener error.
func (s *Server) Serve(ctx context.Context) error {
	var once sync.Once
	markReady := func() { once.Do(func() { close(s.ready) }) }
	defer markReady()
	if s.served.Swap(true) {
		return errors.New("control server: Serve called twice: build a new Server")
	}
	if s.opts.Director == nil {
		return errors.New("control server: no Director: the daemon must pass the announcer loop")
	}
	if s.opts.API.Socket == "" && s.opts.API.TCP == nil {
		return errors.New("control server: neither api.socket nor api.tcp is configured: set api.socket")
	}

	type endpoint struct {
		srv *grpc.Server
		lis net.Listener
	}
	var eps []endpoint
	closeAll := func() {
		for _, ep := range eps {
			ep.lis.Close()
		}
	}
	if s.opts.API.Socket != "" {
		lis, err := listenUnix(s.opts.API.Socket)
		if err != nil {
			return err
		}
		eps = append(eps, endpoint{s.newGRPC(grpc.Creds(peerCredentials{})), lis})
	}
	if t := s.opts.API.TCP; t != nil {
		creds, err := serverTLS(t)
		if err != nil {
			closeAll()
			return err
		}
		lis, err := net.Listen("tcp", t.Listen)
		if err != nil {
			closeAll()
			return fmt.Errorf("api.tcp.listen %s: %w: pick a free address or remove api.tcp", t.Listen, err)
		}
		// The TCP port can be reached from the network: cap its connections
		// and bound the TLS handshake, so a flood cannot take descriptors
		// from health probes or lock the Unix socket out.
		capped := connlimit.New(lis, connlimit.DefaultMax(), "api.tcp", s.log)
		eps = append(eps, endpoint{s.newGRPC(grpc.Creds(creds), grpc.ConnectionTimeout(tcpHandshakeTimeout)), capped})
	}
	s.mu.Lock()
	for _, ep := range eps {
		s.addrs = append(s.addrs, ep.lis.Addr())
	}
	s.mu.Unlock()
	markReady()

	errs := make(chan error, len(eps))
	for _, ep := range eps {
		s.log.Info("control API listening", "addr", ep.lis.Addr().String(), "network", ep.lis.Addr().Network())
		go func() { errs <- ep.srv.Serve(ep.lis) }()
	}
	var first error
	select {
	case <-ctx.Done():
	case first = <-errs:
		first = fmt.Errorf("control API stopped: %w", first)
	}
	close(s.svc.stopping)
	for _, ep := range eps {
		stopGracefully(ep.srv, 2*time.Second)
	}
	if s.opts.API.Socket != "" {
		removeSocket(s.opts.API.Socket, s.log)
	}
	return first
}

// Connection bounds of both listeners. A connection without a call for
// idleTimeout is closed (a Watch stream is a call); one whose peer does not
// answer a keepalive ping within pingTimeout after pingAfter of silence is
// closed too, so dead clients do not hold descriptors. A connection carries
// at most maxStreams concurrent calls.
const (
	tcpHandshakeTimeout = 10 * time.Second
	idleTimeout         = 5 * time.Minute
	pingAfter           = time.Minute
	pingTimeout         = 20 * time.Second
	maxStreams          = 100
)

// newGRPC builds one gRPC server with the Director service, reflection and
// the standard health service.
func (s *Server) newGRPC(opts ...grpc.ServerOption) *grpc.Server {
	opts = append(opts,
		grpc.KeepaliveParams(keepalive.ServerParameters{MaxConnectionIdle: idleTimeout, Time: pingAfter, Timeout: pingTimeout}),
		grpc.MaxConcurrentStreams(maxStreams),
		// An idle connection (a Watch client waiting for events) keeps no
		// write buffer of its own.
		grpc.SharedWriteBuffer(true))
	srv := grpc.NewServer(opts...)
	directorv1.RegisterDirectorServer(srv, s.svc)
	hs := health.NewServer()
	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	hs.SetServingStatus(directorv1.Director_ServiceDesc.ServiceName, healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(srv, hs)
	reflection.Register(srv)
	return srv
}

// stopGracefully lets in-flight calls finish for up to d, then cuts the rest
// (Watch streams never finish by themselves).
func stopGracefully(srv *grpc.Server, d time.Duration) {
	done := make(chan struct{})
	go func() {
		srv.GracefulStop()
		close(done)
	}()
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		srv.Stop()
		<-done
	}
}
