package control_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control"
	"github.com/anycast-director/director/control/controltest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

func TestTCPListenerRequiresAClientCertificateFromTheConfiguredCA(t *testing.T) {
	dir := t.TempDir()
	ca, rogue := controltest.NewCA(t, "director-ca"), controltest.NewCA(t, "rogue-ca")
	srvCert, srvKey := controltest.WritePair(t, dir, "server", ca.Issue(t, "directord", true))
	caPath := filepath.Join(dir, "ca.PEM")
	if err := os.WriteFile(caPath, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	h := controltest.Start(t, controltest.Options{Server: func(o *control.ServerOptions) {
		o.API.TCP = &config.TCPAPI{Listen: "127.0.0.1:0", Cert: srvCert, Key: srvKey, ClientCA: caPath}
	}})
	addrs := h.Server.Addrs()
	if len(addrs) != 2 || addrs[1].Network() != "tcp" {
		t.Fatalf("listeners = %v, want the Unix socket and TCP", addrs)
	}
	tcpAddr := addrs[1].String()
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)

	call := func(cfg *tls.Config) error {
		creds := insecure.NewCredentials()
		if cfg != nil {
			creds = credentials.NewTLS(cfg)
		}
		conn, err := grpc.NewClient(tcpAddr, grpc.WithTransportCredentials(creds))
		if err != nil {
			return err
		}
		defer conn.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		_, err = directorv1.NewDirectorClient(conn).DrainDirector(ctx, &directorv1.DrainDirectorRequest{Reason: "tls test"})
		return err
	}
	good := ca.Issue(t, "ops", false)
	tests := []struct {
		name string
		cfg  *tls.Config
		ok   bool
	}{
		{"plaintext", nil, false},
		{"TLS without a client certificate", &tls.Config{RootCAs: roots, ServerName: "127.0.0.1"}, false},
		{"client certificate from another CA", &tls.Config{RootCAs: roots, ServerName: "127.0.0.1",
			Certificates: []tls.Certificate{rogue.Issue(t, "mallory", false)}}, false},
		{"TLS 1.2 only", &tls.Config{RootCAs: roots, ServerName: "127.0.0.1", MaxVersion: tls.VersionTLS12,
			Certificates: []tls.Certificate{good}}, false},
		{"valid client certificate", &tls.Config{RootCAs: roots, ServerName: "127.0.0.1",
			Certificates: []tls.Certificate{good}}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := call(tt.cfg)
			if (err == nil) != tt.ok {
				t.Errorf("call error = %v, want success %t", err, tt.ok)
			}
		})
	}
	// Only the accepted client changed anything, and the audit log names it
	// by certificate subject.
	st := h.WaitFor("the drain in status", func(s *announcer.Status) bool { return s.Overrides.Director != nil })
	if n := st.Overrides.Director; n.Who != "cert CN=ops,O=anycast-director" {
		t.Errorf("director drain note = %+v, want it set by cert CN=ops,O=anycast-director", n)
	}
	logs := h.Logs.String()
	if !strings.Contains(logs, `caller="cert CN=ops,O=anycast-director"`) || strings.Contains(logs, "mallory") {
		t.Errorf("audit log:\n%s", logs)
	}
}

func TestUnixSocketModeAndStaleSocket(t *testing.T) {
	dir := controltest.ShortTempDir(t)
	sock := filepath.Join(dir, "sub", "d.sock")
	// A stale socket left by a crashed daemon: bound, then abandoned.
	if err := os.MkdirAll(filepath.Dir(sock), 0o750); err != nil {
		t.Fatal(err)
	}
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()

	h := controltest.Start(t, controltest.Options{Server: func(o *control.ServerOptions) { o.API.Socket = sock }})
	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode = %v, want a socket with 0600", fi.Mode())
	}
	if _, err := h.Client.GetStatus(ctxT(t), &directorv1.GetStatusRequest{}); err != nil {
		t.Fatalf("GetStatus over the reclaimed socket: %v", err)
	}

	// A second server must not steal a live socket.
	second := control.NewServer(control.ServerOptions{Director: h.Loop, API: config.API{Socket: sock}})
	err = second.Serve(ctxT(t))
	if err == nil || !strings.Contains(err.Error(), "in use: another directord is running") {
		t.Errorf("second Serve = %v, want an in-use error", err)
	}
	if _, err := h.Client.GetStatus(ctxT(t), &directorv1.GetStatusRequest{}); err != nil {
		t.Errorf("first server broken by the second: %v", err)
	}

	// A fresh parent directory is created with mode 0750.
	fresh := filepath.Join(dir, "fresh", "d.sock")
	h2 := controltest.Start(t, controltest.Options{Server: func(o *control.ServerOptions) { o.API.Socket = fresh }})
	if fi, err := os.Stat(filepath.Dir(fresh)); err != nil || fi.Mode().Perm() != 0o750 {
		t.Errorf("parent directory: %v, %v; want mode 0750", fi.Mode(), err)
	}
	h2.Stop()
	if _, err := os.Stat(fresh); !os.IsNotExist(err) {
		t.Errorf("socket left behind after stop: %v", err)
	}
}
