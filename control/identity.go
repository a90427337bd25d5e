package control

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
)

// OnBehalfOfHeader is the gRPC metadata key a client acting for someone
// else (the operator console) sets to that person's name.
const OnBehalfOfHeader = "director-on-behalf-of"

// maxOnBehalfOf bounds the name taken from OnBehalfOfHeader.
const maxOnBehalfOf = 64

// Caller names who made a call: "uid=0 pid=1234" on the Unix socket,
// "cert CN=ops,O=example" on TCP with mTLS, followed by "on behalf of
// alice" when the client says it acts for a user (OnBehalfOfHeader). The
// authenticated identity always comes first: the header only adds to it.
// It is recorded in overrides, in the event log and in the audit log.
func Caller(ctx context.Context) string {
	who := peerIdentity(ctx)
	if md, ok := metadata.FromIncomingContext(ctx); ok {
		if v := md.Get(OnBehalfOfHeader); len(v) > 0 && v[0] != "" {
			who += " on behalf of " + cleanName(v[0])
		}
	}
	return who
}

// cleanName keeps a client-supplied name printable and short.
func cleanName(s string) string {
	var b strings.Builder
	for _, r := range s {
		if b.Len() >= maxOnBehalfOf {
			b.WriteString("...")
			break
		}
		if unicode.IsPrint(r) {
			b.WriteRune(r)
		} else {
			b.WriteRune('?')
		}
	}
	return b.String()
}

// peerIdentity is the authenticated identity of the connection.
func peerIdentity(ctx context.Context) string {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "unknown"
	}
	switch info := p.AuthInfo.(type) {
	case PeerCredInfo:
		return fmt.Sprintf("uid=%d pid=%d", info.UID, info.PID)
	case credentials.TLSInfo:
		if certs := info.State.PeerCertificates; len(certs) > 0 {
			return "cert " + certs[0].Subject.String()
		}
		return "tls without client certificate"
	}
	if p.Addr != nil {
		return p.Addr.String()
	}
	return "unknown"
}

// invalid returns an InvalidArgument status; the message says what to fix.
func invalid(format string, args ...any) error {
	return status.Errorf(codes.InvalidArgument, format, args...)
}

// toStatus maps an error from the announcer or a daemon hook to a gRPC status
// whose message keeps the cause and says what to do. The message does not
// name the call (the client knows it, and directorctl prefixes its command);
// what names the object for errors that are the daemon's own fault.
func toStatus(what string, err error) error {
	if err == nil {
		return nil
	}
	if _, ok := status.FromError(err); ok && !isWrapped(err) {
		return err
	}
	msg := stripSentinels(err.Error())
	var cerrs config.Errors
	switch {
	case errors.Is(err, announcer.ErrInvalid):
		return status.Error(codes.InvalidArgument, msg)
	case errors.Is(err, announcer.ErrNotFound):
		return status.Error(codes.NotFound, msg)
	case errors.As(err, &cerrs):
		return status.Error(codes.FailedPrecondition, "the configuration file has errors; the running configuration is kept. Fix these and reload:\n"+indent(msg))
	case errors.Is(err, context.DeadlineExceeded):
		return status.Error(codes.DeadlineExceeded, msg+" (the announcer loop did not answer in time; retry, and check the daemon's log if it persists)")
	case errors.Is(err, context.Canceled):
		return status.Error(codes.Canceled, msg)
	}
	if what != "" {
		msg = what + ": " + msg
	}
	return status.Error(codes.Internal, msg)
}

// stripSentinels drops the announcer's sentinel texts ("invalid request: ",
// "not found: ") from a message: the status code says it.
func stripSentinels(msg string) string {
	for _, s := range []error{announcer.ErrInvalid, announcer.ErrNotFound} {
		msg = strings.ReplaceAll(msg, s.Error()+": ", "")
	}
	return msg
}

// ConfigFileError is what a Reload hook returns when the configuration file
// could not be read or has errors: nothing changed and the running
// configuration is kept. The API answers FAILED_PRECONDITION with its text.
type ConfigFileError struct {
	// Path is the configuration file.
	Path string
	// Err is the read error or the config.Errors.
	Err error
}

// Error says what is wrong with the file and that nothing changed.
func (e *ConfigFileError) Error() string {
	var cerrs config.Errors
	if errors.As(e.Err, &cerrs) {
		return fmt.Sprintf("%s has errors; nothing changed:\n%v", e.Path, e.Err)
	}
	return fmt.Sprintf("%v; nothing changed", e.Err)
}

// Unwrap returns the underlying error.
func (e *ConfigFileError) Unwrap() error { return e.Err }

// isWrapped reports whether err is something other than a bare status error
// (status.FromError also unwraps, which would lose our context).
func isWrapped(err error) bool {
	_, bare := err.(interface{ GRPCStatus() *status.Status })
	return !bare
}

// indent prefixes every line with two spaces.
func indent(s string) string {
	return "  " + strings.ReplaceAll(strings.TrimRight(s, "\n"), "\n", "\n  ")
}

// notFound returns a NotFound status for something the running configuration
// lacks; the message lists what exists.
func notFound(format string, args ...any) error {
	return status.Errorf(codes.NotFound, format, args...)
}
