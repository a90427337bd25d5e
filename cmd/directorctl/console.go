package main

import (
	"bufio"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/console"
)

// consoleCmd is `directorctl console`: the web console for a fleet.
func (a *app) consoleCmd() *cobra.Command {
	var (
		o         console.Options
		directors []string
	)
	cmd := &cobra.Command{
		Use:   "console",
		Short: "Serve the operator console: one web page for many directors",
		Long: `Serve the operator console, a web page that shows every director side by side:
VIPs (advertised or not, and why), real servers' health and live IPVS numbers,
Maglev fingerprints, routing peers and events, with disagreements highlighted;
actions (drain, weights, VIPs, director drain) and the configuration history
with rollback previews.

Each --director is NAME=ADDRESS: a Unix socket path, or host:port reached with
mutual TLS using the global --cert, --key and --ca. Without --director the
console shows the local director (--socket).

The console is read-only unless --allow-actions is given; actions then need a
user with the operate role from --users (lines name:bcrypt-hash[:read|operate],
hashes from 'directorctl console hash-password'). Beyond loopback it requires
--tls-cert, --tls-key and --users. See docs/console.md.`,
		Example: `  directorctl console
  directorctl console --listen 0.0.0.0:8470 --tls-cert c.pem --tls-key k.pem --users users \
      --allow-actions --cert ops.crt --key ops.key --ca directors-ca.pem \
      --director d1=d1.example:9470 --director d2=d2.example:9470`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			targets, err := a.consoleTargets(directors)
			if err != nil {
				return err
			}
			o.Directors, o.Dial = targets, a.dialTarget
			srv, err := console.New(o)
			if err != nil {
				return usageError{err}
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(cmd.Context()) }()
			<-srv.Ready()
			if srv.Addr() != nil {
				fmt.Fprintf(a.stdout, "console: %s (%d directors, %s)\n", srv.URL(), len(targets), mode(o))
			}
			if err := <-done; err != nil {
				return failure{err}
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.Listen, "listen", "127.0.0.1:8470", "address to serve the page on")
	f.StringArrayVar(&directors, "director", nil, "a director to show, NAME=ADDRESS (socket path or host:port); repeat for each")
	f.StringVar(&o.TLSCert, "tls-cert", "", "serve HTTPS with this certificate (PEM)")
	f.StringVar(&o.TLSKey, "tls-key", "", "and this key (PEM)")
	f.StringVar(&o.UsersFile, "users", "", "users file: name:bcrypt-hash[:read|operate] per line")
	f.BoolVar(&o.AllowActions, "allow-actions", false, "let users with the operate role act (otherwise read-only)")
	f.DurationVar(&o.Poll, "poll", time.Second, "how often each director's status is read")
	cmd.AddCommand(a.hashPasswordCmd())
	return cmd
}

func mode(o console.Options) string {
	if o.AllowActions {
		return "actions allowed for operate users"
	}
	return "read-only"
}

// consoleTargets parses --director flags; without any, the local director.
func (a *app) consoleTargets(flags []string) ([]console.Target, error) {
	if len(flags) == 0 {
		if a.addr != "" {
			host, _, _ := net.SplitHostPort(a.addr)
			return []console.Target{{Name: host, Addr: a.addr}}, nil
		}
		return []console.Target{{Name: "local", Addr: a.socket}}, nil
	}
	var out []console.Target
	for _, f := range flags {
		name, addr, ok := strings.Cut(f, "=")
		if !ok || name == "" || addr == "" {
			return nil, usagef("--director %q: use NAME=ADDRESS, for example d1=/run/directord/directord.sock or d1=d1.example:9470", f)
		}
		if !strings.HasPrefix(addr, "/") {
			if _, _, err := net.SplitHostPort(addr); err != nil {
				return nil, usagef("--director %s: %q is neither a socket path (starting with /) nor host:port", name, addr)
			}
			if a.cert == "" || a.ca == "" {
				return nil, usagef("--director %s=%s is reached over TCP with mutual TLS: give --cert, --key and --ca", name, addr)
			}
		}
		out = append(out, console.Target{Name: name, Addr: addr})
	}
	return out, nil
}

// dialTarget connects to one director as directorctl does.
func (a *app) dialTarget(t console.Target) (*grpc.ClientConn, error) {
	var (
		target string
		creds  credentials.TransportCredentials
	)
	if strings.HasPrefix(t.Addr, "/") {
		target, creds = "unix://"+t.Addr, insecure.NewCredentials()
	} else {
		host, _, _ := net.SplitHostPort(t.Addr)
		c, err := a.clientTLS(host)
		if err != nil {
			return nil, err
		}
		target, creds = "dns:///"+t.Addr, c
	}
	return grpc.NewClient(target, grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(maxStatusBytes)))
}

// hashPasswordCmd prints the bcrypt hash of a password read from stdin.
func (a *app) hashPasswordCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "hash-password",
		Short: "Print the bcrypt hash of a password read from stdin, for the users file",
		Example: `  read -rs PW && echo "$PW" | directorctl console hash-password
  echo "alice:$(... hash-password):operate" >> users`,
		Args: exactArgs(0, "no arguments (the password is read from stdin)"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			line, err := bufio.NewReader(cmd.InOrStdin()).ReadString('\n')
			if err != nil && line == "" {
				return usagef("no password on stdin")
			}
			h, err := console.HashPassword(strings.TrimRight(line, "\r\n"))
			if err != nil {
				return usageError{err}
			}
			fmt.Fprintln(a.stdout, h)
			return nil
		},
	}
}
