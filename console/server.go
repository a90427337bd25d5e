// Package console is the operator console: one web page for a fleet of
// directors, served by `directorctl console`. It connects to every director
// over the gRPC API (the socket or mTLS, as directorctl does), follows their
// status and event streams, and shows them side by side with live IPVS
// numbers pushed to the browser as server-sent events. Actions (drain,
// weights, VIPs, director drain, rollback) go through the same API calls as
// directorctl, on behalf of the signed-in user.
//
// Security: read-only unless started with actions allowed; beyond loopback
// it requires TLS and a users file (bcrypt hashes, HTTP basic
// authentication); every action needs the operate role, a same-origin
// request and the page's CSRF token. Everything the page loads is embedded
// in the binary.
package console

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"
	"google.golang.org/grpc"
)

//go:embed web
var webFiles embed.FS

// Options configure a console.
type Options struct {
	// Listen is the HTTP(S) address (default 127.0.0.1:8470).
	Listen string
	// Directors are the directors to show, in column order.
	Directors []Target
	// Dial connects to one director's API.
	Dial func(Target) (*grpc.ClientConn, error)
	// TLSCert and TLSKey serve HTTPS (required beyond loopback).
	TLSCert, TLSKey string
	// UsersFile lists the users (required beyond loopback); without it the
	// page is anonymous and read-only.
	UsersFile string
	// AllowActions lets operate users act; without it the console is
	// read-only for everyone.
	AllowActions bool
	// Poll is how often each director's status is read (default 1 s; an
	// event triggers a read at once).
	Poll time.Duration
	// Logger receives connection problems and every action.
	Logger *slog.Logger
}

// Server is a running console.
type Server struct {
	opts         Options
	log          *slog.Logger
	users        users
	dummyHash    []byte
	verified     verifiedCache
	csrfKey      []byte
	allowActions bool
	directors    []*director
	byName       map[string]*director
	hub          *hub
	history      func(name string) History

	mu    sync.Mutex
	addr  net.Addr
	ready chan struct{}
}

// New checks the options and connects to the directors (lazily: a director
// that is down shows as such on the page until it answers).
func New(o Options) (*Server, error) {
	if o.Listen == "" {
		o.Listen = "127.0.0.1:8470"
	}
	if o.Poll <= 0 {
		o.Poll = time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if err := checkExposure(o); err != nil {
		return nil, err
	}
	s := &Server{opts: o, log: o.Logger, allowActions: o.AllowActions, byName: map[string]*director{},
		hub: newHub(), ready: make(chan struct{}), csrfKey: make([]byte, 32)}
	if _, err := rand.Read(s.csrfKey); err != nil {
		return nil, err
	}
	s.verified.key = s.csrfKey
	if o.UsersFile != "" {
		u, err := LoadUsers(o.UsersFile)
		if err != nil {
			return nil, err
		}
		s.users = u
		// Unknown names are checked against a hash of the users' own cost,
		// so they take as long as a wrong password.
		cost := bcrypt.MinCost
		for _, x := range u {
			c, _ := bcrypt.Cost(x.hash)
			cost = max(cost, c)
		}
		if s.dummyHash, err = bcrypt.GenerateFromPassword(s.csrfKey[:16], cost); err != nil {
			return nil, err
		}
	}
	if len(o.Directors) == 0 {
		return nil, errors.New("no directors: give at least one --director NAME=ADDRESS")
	}
	for _, t := range o.Directors {
		if _, dup := s.byName[t.Name]; dup {
			return nil, fmt.Errorf("director name %q is given twice: names label the columns and must differ", t.Name)
		}
		conn, err := o.Dial(t)
		if err != nil {
			s.close()
			return nil, fmt.Errorf("director %s (%s): %w", t.Name, t.Addr, err)
		}
		d := newDirector(t, conn, o.Poll, s.log, s.hub.poke)
		s.directors = append(s.directors, d)
		s.byName[t.Name] = d
	}
	s.history = func(name string) History { return grpcHistory{s.byName[name].client} }
	return s, nil
}

// checkExposure refuses to serve beyond loopback without TLS and users.
func checkExposure(o Options) error {
	host, _, err := net.SplitHostPort(o.Listen)
	if err != nil {
		return fmt.Errorf("--listen %q is not host:port: %w", o.Listen, err)
	}
	if (o.TLSCert == "") != (o.TLSKey == "") {
		return errors.New("give both --tls-cert and --tls-key, or neither")
	}
	if isLoopback(host) {
		return nil
	}
	if o.TLSCert == "" || o.UsersFile == "" {
		return fmt.Errorf("--listen %s is reachable beyond this host: that needs --tls-cert, --tls-key and --users "+
			"(or listen on 127.0.0.1 and use an SSH tunnel)", o.Listen)
	}
	return nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Ready is closed once the listener is bound.
func (s *Server) Ready() <-chan struct{} { return s.ready }

// Addr is the bound address (after Ready).
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// URL is the page's address (after Ready).
func (s *Server) URL() string {
	scheme := "http"
	if s.opts.TLSCert != "" {
		scheme = "https"
	}
	return scheme + "://" + s.Addr().String() + "/"
}

// Serve follows the directors and serves the page until ctx ends.
func (s *Server) Serve(ctx context.Context) error {
	defer s.close()
	lis, err := net.Listen("tcp", s.opts.Listen)
	if err != nil {
		close(s.ready)
		return fmt.Errorf("listen on %s: %w", s.opts.Listen, err)
	}
	if s.opts.TLSCert != "" {
		cert, err := tls.LoadX509KeyPair(s.opts.TLSCert, s.opts.TLSKey)
		if err != nil {
			lis.Close()
			close(s.ready)
			return fmt.Errorf("load --tls-cert and --tls-key: %w", err)
		}
		lis = tls.NewListener(lis, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12,
			NextProtos: []string{"h2", "http/1.1"}})
	}
	s.mu.Lock()
	s.addr = lis.Addr()
	s.mu.Unlock()
	close(s.ready)

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for _, d := range s.directors {
		go d.run(ctx)
	}
	go s.hub.run(ctx, s.view)
	srv := &http.Server{Handler: s.Handler(), ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute,
		MaxHeaderBytes: 64 << 10, BaseContext: func(net.Listener) context.Context { return ctx }}
	go func() {
		<-ctx.Done()
		shut, done := context.WithTimeout(context.Background(), 2*time.Second)
		defer done()
		srv.Shutdown(shut)
	}()
	s.log.Info("console listening", "addr", s.URL(), "directors", len(s.directors), "actions", s.allowActions)
	if err := srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func (s *Server) close() {
	for _, d := range s.directors {
		d.conn.Close()
	}
}

// view builds the page's current view.
func (s *Server) view() View {
	snaps := make([]snapshot, 0, len(s.directors))
	var events []EventRow
	for _, d := range s.directors {
		snap, evs := d.snapshot()
		snaps = append(snaps, snap)
		events = append(events, evs...)
	}
	return buildView(snaps, newestEvents(events, maxEvents), time.Now())
}

// Handler serves the page, its assets and the API.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	static, _ := fs.Sub(webFiles, "web")
	mux.Handle("GET /", http.FileServerFS(static))
	mux.HandleFunc("GET /api/session", s.handleSession)
	mux.HandleFunc("GET /api/view", s.handleView)
	mux.HandleFunc("GET /api/stream", s.handleStream)
	mux.HandleFunc("POST /api/action", s.handleAction)
	mux.HandleFunc("GET /api/configs", s.handleConfigs)
	mux.HandleFunc("GET /api/config", s.handleConfig)
	mux.HandleFunc("GET /api/diff", s.handleDiff)
	mux.HandleFunc("GET /api/rollback/preview", s.handleRollbackPreview)
	mux.HandleFunc("POST /api/rollback", s.handleRollback)
	return s.secure(mux)
}

// secure authenticates every request and sets headers that keep the page
// from being framed or fed foreign scripts.
func (s *Server) secure(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("Cache-Control", "no-store")
		if r.TLS != nil {
			h.Set("Strict-Transport-Security", "max-age=31536000")
		}
		id, ok := s.authenticate(r)
		if !ok {
			h.Set("WWW-Authenticate", `Basic realm="directorctl console", charset="UTF-8"`)
			http.Error(w, "sign in with a user of the console's users file", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r.WithContext(withIdentity(r.Context(), id)))
	})
}

type idKey struct{}

func withIdentity(ctx context.Context, id identity) context.Context {
	return context.WithValue(ctx, idKey{}, id)
}

func identityOf(r *http.Request) identity {
	id, _ := r.Context().Value(idKey{}).(identity)
	return id
}
