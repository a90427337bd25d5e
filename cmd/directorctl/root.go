package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/internal/buildinfo"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// defaultSocket matches config.DefaultAPISocket (directorctl does not import
// the daemon's packages).
const defaultSocket = "/run/directord/directord.sock"

// maxStatusBytes bounds a response directorctl accepts (GetStatus is about
// 85 bytes per backend).
const maxStatusBytes = 256 << 20

// app holds the global flags and the output streams of one invocation.
type app struct {
	stdout, stderr io.Writer

	socket     string
	addr       string
	cert       string
	key        string
	ca         string
	serverName string
	timeout    time.Duration

	root *cobra.Command
}

// rootCmd is the cobra root plus the app it belongs to.
type rootCmd struct {
	*cobra.Command
	app *app
}

// target names where directorctl connects, for messages, and whether that
// is the TCP listener (mutual TLS) rather than the socket.
func (r rootCmd) target() (string, bool) {
	if r.app.addr != "" {
		return r.app.addr, true
	}
	return r.app.socket, false
}

func newRoot(stdout, stderr io.Writer) rootCmd {
	a := &app{stdout: stdout, stderr: stderr}
	root := &cobra.Command{
		Use:   "directorctl",
		Short: "Control a running directord (Anycast Director)",
		Long: `directorctl talks to directord's gRPC API: status, events, operator overrides
(drain a backend, set a weight, disable a VIP, drain the director), reloads
with a dry run, rollbacks and the router-side configuration.

It uses the local Unix socket by default; --addr reaches a remote director
over TCP with mutual TLS (--cert, --key, --ca).

Exit codes: 0 success, 1 the request failed or directord could not be
reached, 2 usage error (including a request directord rejected as malformed).`,
		Version:       buildinfo.Get().Version,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.SetVersionTemplate(versionTemplate())
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	pf := root.PersistentFlags()
	pf.StringVar(&a.socket, "socket", defaultSocket, "directord's API socket")
	pf.StringVar(&a.addr, "addr", "", "reach directord over TCP with mTLS at host:port instead of the socket")
	pf.StringVar(&a.cert, "cert", "", "client certificate (PEM) for --addr")
	pf.StringVar(&a.key, "key", "", "client key (PEM) for --addr")
	pf.StringVar(&a.ca, "ca", "", "CA bundle (PEM) that signs directord's server certificate, for --addr")
	pf.StringVar(&a.serverName, "server-name", "", "expected name in directord's certificate (default: the host of --addr)")
	pf.DurationVar(&a.timeout, "timeout", 10*time.Second, "how long to wait for an answer")
	root.MarkFlagsRequiredTogether("cert", "key")
	a.root = root

	root.AddCommand(a.statusCmd(), a.watchCmd(),
		a.drainCmd(), a.enableCmd(), a.weightCmd(), a.vipCmd(), a.directorCmd(),
		a.reloadCmd(), a.rollbackCmd(), a.configsCmd(), a.routerConfigCmd(), a.versionCmd(), a.consoleCmd(), a.manualCmd())
	return rootCmd{root, a}
}

// dial connects to directord. The connection is lazy: errors surface on the
// first call.
func (a *app) dial() (directorv1.DirectorClient, func(), error) {
	var (
		target string
		creds  credentials.TransportCredentials
	)
	if a.addr == "" {
		if a.cert != "" || a.ca != "" {
			return nil, nil, usagef("--cert, --key and --ca apply to --addr only: add --addr host:port, or drop them to use the socket")
		}
		// gRPC's unix:// target wants an absolute path (a relative one is
		// read as an authority); the flag takes either.
		path, err := filepath.Abs(a.socket)
		if err != nil {
			return nil, nil, usagef("--socket %q: %v", a.socket, err)
		}
		target, creds = "unix://"+path, insecure.NewCredentials()
	} else {
		if a.cert == "" || a.ca == "" {
			return nil, nil, usagef("--addr needs mutual TLS: give --cert, --key and --ca")
		}
		host, _, err := net.SplitHostPort(a.addr)
		if err != nil {
			return nil, nil, usagef("--addr %q is not host:port: %v", a.addr, err)
		}
		c, err := a.clientTLS(host)
		if err != nil {
			return nil, nil, failure{err}
		}
		target, creds = "dns:///"+a.addr, c
	}
	// A status of 10,000 services is several megabytes, above gRPC's default
	// 4 MiB receive limit.
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxStatusBytes)))
	if err != nil {
		return nil, nil, failure{fmt.Errorf("connect to %s: %w", target, err)}
	}
	return directorv1.NewDirectorClient(conn), func() { conn.Close() }, nil
}

// clientTLS loads the client certificate and the CA for --addr.
func (a *app) clientTLS(host string) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(a.cert, a.key)
	if err != nil {
		return nil, fmt.Errorf("load --cert %s and --key %s: %w", a.cert, a.key, err)
	}
	pem, err := os.ReadFile(a.ca)
	if err != nil {
		return nil, fmt.Errorf("read --ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca %s holds no PEM certificate", a.ca)
	}
	name := a.serverName
	if name == "" {
		name = host
	}
	return credentials.NewTLS(&tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool,
		ServerName: name, MinVersion: tls.VersionTLS13}), nil
}

// call runs f with a connected client and the --timeout deadline.
func (a *app) call(cmd *cobra.Command, f func(ctx context.Context, c directorv1.DirectorClient) error) error {
	c, closeConn, err := a.dial()
	if err != nil {
		return err
	}
	defer closeConn()
	ctx, cancel := context.WithTimeout(cmd.Context(), a.timeout)
	defer cancel()
	return f(ctx, c)
}

// args returns a cobra argument validator that reports usage errors.
func exactArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) != n {
			return usagef("expected %s, got %d argument(s)", what, len(args))
		}
		return nil
	}
}

// maxArgs allows at most n arguments.
func maxArgs(n int, what string) cobra.PositionalArgs {
	return func(_ *cobra.Command, args []string) error {
		if len(args) > n {
			return usagef("expected at most %s, got %d arguments", what, len(args))
		}
		return nil
	}
}
