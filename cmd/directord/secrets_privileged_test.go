//go:build linux && privileged

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/anycast-director/director/lab/netlab"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// TestPrivilegedSecretNeverShown: an MD5 key from a password_file reaches no
// log line (at debug level, through a peer that keeps failing to connect), no
// check-config output, no metric and no API answer (status, router-config).
// The daemon runs in a namespace of its own, where it binds its VIP.
func TestPrivilegedSecretNeverShown(t *testing.T) {
	const secret = "md5-k3y-that-must-stay-inside"
	lab := netlab.New(t)
	ns := lab.Namespace("sec")
	bin := buildDaemon(t)
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "peer.key")
	if err := os.WriteFile(keyFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	metrics := "127.0.0.1:9469"
	scrape := func(string) string { out, _ := ns.Run("curl", "-sf", "http://"+metrics+"/metrics"); return out }
	cfgPath := filepath.Join(dir, "directord.yaml")
	cfg := fmt.Sprintf(`director: { name: s1, announce: bgp, hold_down: 0s, graceful_shutdown: 0s, linger: 0s, state_dir: %[1]s/state }
api: { socket: %[1]s/d.sock }
metrics: { listen: %[2]s }
log: { level: debug }
bgp:
  asn: 65100
  router_id: 10.0.0.1
  listen_port: 0
  peers:
    - { address: 127.0.0.1, port: %[3]d, asn: 65000, password_file: %[4]s }
services:
  - name: self
    vip: 198.18.0.10
    port: 80
    forwarding: local
    health: { type: tcp, interval: 200ms, rise: 1, fall: 1 }
    backends: [ { address: %[5]s } ]
`, dir, metrics, 1179, keyFile, "127.0.0.1, port: 9469")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	check, err := exec.Command(bin, "check-config", "-config", cfgPath).CombinedOutput()
	if err != nil {
		t.Fatalf("check-config: %v\n%s", err, check)
	}
	if !strings.Contains(string(check), "md5 (from file "+keyFile+")") {
		t.Errorf("check-config does not say where the key comes from:\n%s", check)
	}

	logs := ns.Start("directord", nil, bin, "run", "-config", cfgPath)
	waitFor(t, "the VIP to be advertised", 15*time.Second, func() bool {
		return strings.Contains(scrape(metrics), `directord_vip_advertised{vip="198.18.0.10"} 1`)
	})
	// The speaker has configured the peer and tries to connect (and fails:
	// nothing listens there), logging at debug level as it goes.
	if _, _, err := logs.WaitOutput("starting outgoing connection manager", 0, 15*time.Second); err != nil {
		t.Fatal(err)
	}

	conn, err := grpc.NewClient("unix://"+filepath.Join(dir, "d.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	client := directorv1.NewDirectorClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := client.GetStatus(ctx, &directorv1.GetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	rc, err := client.RouterConfig(ctx, &directorv1.RouterConfigRequest{Flavor: directorv1.RouterFlavor_ROUTER_FLAVOR_FRR})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(rc.String(), redactedPassword) {
		t.Errorf("router-config over the API lacks the redacted password:\n%s", rc.String())
	}
	for what, text := range map[string]string{
		"check-config":        string(check),
		"log":                 logs.Output(),
		"metrics":             scrape(metrics),
		"status":              protojson.Format(st),
		"router-config (API)": rc.String(),
	} {
		if strings.Contains(text, secret) {
			t.Errorf("the MD5 key appears in the %s output", what)
		}
	}
}
