package control

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/credentials"

	"github.com/anycast-director/director/config"
)

// listenUnix binds the API socket with mode 0600, creating its parent
// directory (0750) if needed. A leftover socket file from a crashed daemon is
// removed, but only when nothing answers on it: a second daemon must not
// steal a running one's socket.
func listenUnix(path string) (net.Listener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("create the API socket's directory: %w: check api.socket", err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("api.socket %s exists and is not a socket: remove it or choose another path", path)
		}
		conn, derr := net.DialTimeout("unix", path, time.Second)
		if derr == nil {
			conn.Close()
			return nil, fmt.Errorf("api.socket %s is in use: another directord is running; stop it or choose another path", path)
		}
		if err := os.Remove(path); err != nil {
			return nil, fmt.Errorf("remove stale API socket %s: %w", path, err)
		}
	}
	// Bind in a private directory, set the mode, then rename into place: the
	// socket is never reachable with a wider mode, and the process umask
	// (shared by every goroutine) is left alone.
	tmp, err := os.MkdirTemp(filepath.Dir(path), ".directord-sock-")
	if err != nil {
		return nil, fmt.Errorf("bind API socket %s: %w", path, err)
	}
	defer os.RemoveAll(tmp)
	tmpPath := filepath.Join(tmp, "s")
	lis, err := net.Listen("unix", tmpPath)
	if err != nil {
		return nil, fmt.Errorf("listen on api.socket %s: %w", path, err)
	}
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmpPath, 0o600); err != nil {
		lis.Close()
		return nil, fmt.Errorf("set mode 0600 on %s: %w", path, err)
	}
	if err := os.Rename(tmpPath, path); err != nil {
		lis.Close()
		return nil, fmt.Errorf("move API socket into place at %s: %w", path, err)
	}
	return namedListener{lis, &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// namedListener reports the socket's final path rather than the private
// path it was bound under.
type namedListener struct {
	net.Listener
	addr net.Addr
}

// Addr returns the configured socket path.
func (l namedListener) Addr() net.Addr { return l.addr }

// removeSocket deletes the API socket on shutdown.
func removeSocket(path string, log *slog.Logger) {
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		log.Warn("remove API socket", "err", err)
	}
}

// serverTLS builds the TCP listener's credentials: TLS 1.3 only, and a client
// certificate that chains to the configured CA is required.
func serverTLS(t *config.TCPAPI) (credentials.TransportCredentials, error) {
	cert, err := tls.LoadX509KeyPair(t.Cert, t.Key)
	if err != nil {
		return nil, fmt.Errorf("api.tcp: load server certificate %s and key %s: %w", t.Cert, t.Key, err)
	}
	pem, err := os.ReadFile(t.ClientCA)
	if err != nil {
		return nil, fmt.Errorf("api.tcp.client_ca: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("api.tcp.client_ca %s holds no PEM certificate: point it at the CA that signs client certificates", t.ClientCA)
	}
	return credentials.NewTLS(&tls.Config{
		Certificates: []tls.Certificate{cert},
		ClientCAs:    pool,
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS13,
	}), nil
}

// PeerCredInfo is the AuthInfo of a caller on the Unix socket: the kernel's
// SO_PEERCRED record of the connecting process.
type PeerCredInfo struct {
	credentials.CommonAuthInfo
	// UID, GID and PID identify the connecting process.
	UID, GID uint32
	// PID is the connecting process's ID at connect time.
	PID int32
}

// AuthType names the mechanism for gRPC.
func (PeerCredInfo) AuthType() string { return "peercred" }

// peerCredentials are transport credentials for the Unix socket: no
// encryption (the socket's mode is the access control), but each connection
// carries the peer's uid and pid so the audit log can name the caller.
type peerCredentials struct{}

// ClientHandshake is unused: directorctl dials with insecure credentials.
func (peerCredentials) ClientHandshake(_ context.Context, _ string, c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c, PeerCredInfo{}, nil
}

// ServerHandshake reads SO_PEERCRED from the accepted connection.
func (peerCredentials) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	info := PeerCredInfo{CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.NoSecurity}}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return c, info, nil
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return nil, nil, fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var gerr error
	if err := raw.Control(func(fd uintptr) {
		cred, gerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, nil, fmt.Errorf("peer credentials: %w", err)
	}
	if gerr != nil {
		return nil, nil, fmt.Errorf("peer credentials: SO_PEERCRED: %w", gerr)
	}
	info.UID, info.GID, info.PID = cred.Uid, cred.Gid, cred.Pid
	return c, info, nil
}

// Info describes the protocol.
func (peerCredentials) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "peercred"}
}

// Clone returns a copy.
func (p peerCredentials) Clone() credentials.TransportCredentials { return p }

// OverrideServerName is deprecated in gRPC and unused.
func (peerCredentials) OverrideServerName(string) error { return nil }
