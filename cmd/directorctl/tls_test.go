package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control"
	"github.com/anycast-director/director/control/controltest"
)

func TestMutualTLSFlags(t *testing.T) {
	dir := t.TempDir()
	ca, rogue := controltest.NewCA(t, "director-ca"), controltest.NewCA(t, "rogue-ca")
	srvCert, srvKey := controltest.WritePair(t, dir, "server", ca.Issue(t, "directord", true))
	cliCert, cliKey := controltest.WritePair(t, dir, "ops", ca.Issue(t, "ops", false))
	badCert, badKey := controltest.WritePair(t, dir, "mallory", rogue.Issue(t, "mallory", false))
	caPath := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(caPath, ca.PEM, 0o600); err != nil {
		t.Fatal(err)
	}
	h := controltest.Start(t, controltest.Options{Server: func(o *control.ServerOptions) {
		o.API.TCP = &config.TCPAPI{Listen: "127.0.0.1:0", Cert: srvCert, Key: srvKey, ClientCA: caPath}
	}})
	addr := h.Server.Addrs()[1].String()
	tests := []struct {
		name   string
		args   []string
		code   int
		stdout string
		stderr string
	}{
		{"valid client certificate", []string{"--addr", addr, "--cert", cliCert, "--key", cliKey, "--ca", caPath, "director", "drain", "--reason", "mtls"},
			0, "director drained", ""},
		{"certificate from another CA", []string{"--addr", addr, "--cert", badCert, "--key", badKey, "--ca", caPath, "--timeout", "3s", "status"},
			1, "", "TLS handshake failed: check"},
		{"missing key file", []string{"--addr", addr, "--cert", cliCert, "--key", filepath.Join(dir, "nope.key"), "--ca", caPath, "status"},
			1, "", "load --cert"},
		{"cert without key", []string{"--addr", addr, "--cert", cliCert, "--ca", caPath, "status"},
			2, "", "if any flags in the group [cert key] are set they must all be set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, stderr, code := ctl(t, nil, tt.args...)
			if code != tt.code || !strings.Contains(out, tt.stdout) || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d\nstdout %q\nstderr %q\nwant exit %d, stdout with %q, stderr with %q", code, out, stderr, tt.code, tt.stdout, tt.stderr)
			}
		})
	}
	st := h.WaitFor("the drain in status", func(s *announcer.Status) bool { return s.Overrides.Director != nil })
	if n := st.Overrides.Director; n.Who != "cert CN=ops,O=anycast-director" {
		t.Errorf("director drain = %+v, want it set by the ops certificate", n)
	}
}
