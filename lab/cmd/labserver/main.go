// Command labserver is the real-server service of the lab: an HTTP server
// that answers with its name (so a client sees which real server served it)
// and a TCP echo server for long-lived connections.
//
//	labserver [-name NAME] [-http :80] [-echo :7000]
//
// HTTP: GET / answers "NAME\n" with the header X-Real-Server: NAME; GET
// /healthz answers "ok". Echo: on connect the server sends "NAME\n", then
// echoes every line back. The name defaults to the host name, which
// containerlab (and the lab runner) set to the node name.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stderr))
}

func run(args []string, stderr io.Writer) int {
	fs := flag.NewFlagSet("labserver", flag.ContinueOnError)
	fs.SetOutput(stderr)
	name := fs.String("name", "", "name in every answer (default: the host name)")
	httpAddr := fs.String("http", ":80", "HTTP listen address (empty: no HTTP)")
	echoAddr := fs.String("echo", ":7000", "TCP echo listen address (empty: no echo)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *name == "" {
		h, err := os.Hostname()
		if err != nil {
			fmt.Fprintf(stderr, "labserver: no -name and no host name: %v\n", err)
			return 2
		}
		*name = h
	}
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("server", *name)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var httpLn, echoLn net.Listener
	var err error
	if *httpAddr != "" {
		if httpLn, err = net.Listen("tcp", *httpAddr); err != nil {
			log.Error("listen", "err", err)
			return 1
		}
	}
	if *echoAddr != "" {
		if echoLn, err = net.Listen("tcp", *echoAddr); err != nil {
			log.Error("listen", "err", err)
			return 1
		}
	}
	log.Info("serving", "http", *httpAddr, "echo", *echoAddr)
	if err := serve(ctx, &server{name: *name, log: log}, httpLn, echoLn); err != nil {
		log.Error("serve", "err", err)
		return 1
	}
	return 0
}

// serve runs the HTTP and echo services on their listeners (either may be
// nil) until ctx ends or one fails.
func serve(ctx context.Context, s *server, httpLn, echoLn net.Listener) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	errc := make(chan error, 2)
	var wg sync.WaitGroup
	if httpLn != nil {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- s.serveHTTP(ctx, httpLn) }()
	}
	if echoLn != nil {
		wg.Add(1)
		go func() { defer wg.Done(); errc <- s.serveEcho(ctx, echoLn) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	s.log.Info("stopped", "http_requests", s.requests.Load(), "echo_connections", s.conns.Load())
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// server holds the name and counters of one labserver.
type server struct {
	name     string
	log      *slog.Logger
	requests atomic.Int64
	conns    atomic.Int64
}

func (s *server) serveHTTP(ctx context.Context, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		io.WriteString(w, "ok\n")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		s.requests.Add(1)
		w.Header().Set("X-Real-Server", s.name)
		io.WriteString(w, s.name+"\n")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		srv.Close()
	}()
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("http: %w", err)
	}
	return ctx.Err()
}

func (s *server) serveEcho(ctx context.Context, ln net.Listener) error {
	var wg sync.WaitGroup
	var mu sync.Mutex
	open := map[net.Conn]struct{}{}
	go func() {
		<-ctx.Done()
		ln.Close()
		mu.Lock()
		for c := range open {
			c.Close()
		}
		mu.Unlock()
	}()
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return fmt.Errorf("echo: %w", err)
		}
		s.conns.Add(1)
		mu.Lock()
		open[c] = struct{}{}
		mu.Unlock()
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.echo(c)
			mu.Lock()
			delete(open, c)
			mu.Unlock()
		}()
	}
}

// echo greets with the server's name and echoes lines until the peer closes.
func (s *server) echo(c net.Conn) {
	defer c.Close()
	if _, err := io.WriteString(c, s.name+"\n"); err != nil {
		return
	}
	r := bufio.NewReader(c)
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, line); err != nil {
			return
		}
	}
}
