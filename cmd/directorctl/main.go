// Command directorctl controls a running directord over its gRPC API: status,
// a live event feed, operator overrides (drain a backend, set a weight,
// disable a VIP, drain the director), reloads with a dry run, rollbacks and
// the router-side configuration.
//
// It talks to the local Unix socket by default (--socket) or to a remote
// director over TCP with mutual TLS (--addr with --cert, --key and --ca).
//
// Exit codes: 0 success, 1 the server refused or failed the request or could
// not be reached, 2 usage error (bad flags or arguments, including a request
// the server rejected as malformed).
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Exit codes.
const (
	exitOK    = 0
	exitFail  = 1
	exitUsage = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run executes one command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	err := root.ExecuteContext(ctx)
	if err == nil {
		return exitOK
	}
	target, tcp := root.target()
	code, msg := describe(err, target, tcp)
	fmt.Fprintln(stderr, "directorctl: "+msg)
	if code == exitUsage && !isServerError(err) {
		fmt.Fprintln(stderr, "Run 'directorctl --help' for usage.")
	}
	return code
}

// usageError marks a problem with the command line.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// usagef builds a usageError.
func usagef(format string, args ...any) error {
	return usageError{fmt.Errorf(format, args...)}
}

// rpcError is a failed call: the server's answer, or no answer at all.
type rpcError struct {
	what string
	err  error
}

func (e rpcError) Error() string { return e.what + ": " + e.err.Error() }
func (e rpcError) Unwrap() error { return e.err }

// failure is a local runtime problem (unreadable certificate, ...).
type failure struct{ err error }

func (e failure) Error() string { return e.err.Error() }
func (e failure) Unwrap() error { return e.err }

func isServerError(err error) bool {
	var r rpcError
	return errors.As(err, &r)
}

// describe picks the exit code and a plain message that says what to do.
// Anything that is neither a failed call nor a local failure comes from
// parsing the command line (cobra's flag and argument errors included).
func describe(err error, target string, tcp bool) (int, string) {
	var r rpcError
	if errors.As(err, &r) {
		st, _ := status.FromError(r.err)
		msg := st.Message()
		switch st.Code() {
		case codes.Unavailable:
			hint := "is directord running? Point --socket (or --addr) at its API"
			if tcp {
				hint = "is directord listening there (api.tcp)? If so the mutual TLS handshake failed: check that --cert and --key\n  are signed by directord's api.tcp.client_ca and that --ca signs directord's certificate"
			}
			switch {
			case strings.Contains(msg, "permission denied"):
				hint = "the API socket is mode 0600: run directorctl as the user directord runs as (usually root)"
			case strings.Contains(msg, "tls:") || strings.Contains(msg, "x509") || strings.Contains(msg, "certificate"):
				hint = "the TLS handshake failed: check --cert and --key (signed by directord's api.tcp.client_ca) and --ca (signs directord's certificate)"
			}
			return exitFail, fmt.Sprintf("cannot reach directord at %s: %s\n  %s", target, msg, hint)
		case codes.InvalidArgument:
			return exitUsage, r.what + ": " + msg
		case codes.NotFound, codes.FailedPrecondition:
			return exitFail, r.what + ": " + msg
		case codes.Unimplemented:
			return exitFail, r.what + ": " + msg + "\n  (the daemon is older than this directorctl, or lacks this feature)"
		case codes.DeadlineExceeded:
			return exitFail, r.what + ": no answer within --timeout: " + msg
		case codes.Unauthenticated, codes.PermissionDenied:
			return exitFail, r.what + ": " + msg + "\n  check --cert, --key and --ca"
		}
		return exitFail, fmt.Sprintf("%s: %s (%s)", r.what, msg, st.Code())
	}
	var f failure
	if errors.As(err, &f) {
		return exitFail, f.Error()
	}
	return exitUsage, err.Error()
}
