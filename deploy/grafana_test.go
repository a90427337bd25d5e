package deploy

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/internal/promtest"
)

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// needsIPVSOrBGP names the metrics a local-only director on loopback cannot
// have; TestVMDashboardQueries (cmd/directord) checks those panels against a
// director with IPVS and a BGP/BFD peer.
var needsIPVSOrBGP = []string{"directord_ipvs_", "directord_peer_", "directord_service_fingerprint_info"}

// TestDashboardQueries runs every query of the Grafana dashboard against a
// real Prometheus scraping a real directord (local services on loopback):
// every query must parse and evaluate, and every one whose metrics such a
// director exports must return data.
func TestDashboardQueries(t *testing.T) {
	if _, err := exec.LookPath("prometheus"); err != nil {
		t.Skip("prometheus not installed (scripts/deps.sh installs it)")
	}
	data, err := os.ReadFile("grafana/directord.json")
	if err != nil {
		t.Fatal(err)
	}
	panels, err := promtest.DashboardQueries(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(panels) < 30 {
		t.Fatalf("found only %d queries in the dashboard; the walk is broken", len(panels))
	}
	dir := t.TempDir()
	bin := buildDirectord(t, dir)
	metrics := freeAddr(t)
	cfg := filepath.Join(dir, "directord.yaml")
	_, port, _ := net.SplitHostPort(metrics)
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf(`director: { name: g1, announce: none, hold_down: 0s, graceful_shutdown: 0s, linger: 0s, state_dir: %[1]s/state }
api: { socket: %[1]s/d.sock }
metrics: { listen: %s }
services:
  - name: self
    vip: 127.0.0.10
    port: 80
    forwarding: local
    health: { type: tcp, interval: 200ms, rise: 1, fall: 1 }
    backends: [ { address: 127.0.0.1, port: %s } ]
`, dir, metrics, port)), 0o644); err != nil {
		t.Fatal(err)
	}
	d := exec.Command(bin, "run", "-config", cfg)
	logs, err := os.Create(filepath.Join(dir, "directord.log"))
	if err != nil {
		t.Fatal(err)
	}
	d.Stdout, d.Stderr = logs, logs
	if err := d.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Process.Kill(); d.Wait(); logs.Close() })

	prom, err := promtest.Start(promtest.Options{Dir: t.TempDir(), Targets: []string{metrics}, Listen: freeAddr(t)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prom.Stop)

	pending := map[string]promtest.Panel{}
	for _, name := range alertMetrics(t) {
		if !needsIPVSOrBGPMetrics(name) {
			pending["alert rules' metric "+name] = promtest.Panel{Title: "alert rules", Expr: name}
		}
	}
	for _, p := range panels {
		if n, err := prom.Query(p.Expr); err != nil {
			t.Errorf("panel %q query %s does not evaluate: %v\n  %s", p.Title, p.RefID, err, p.Expr)
		} else if n == 0 && !needsIPVSOrBGPMetrics(p.Expr) {
			pending[p.Title+"/"+p.RefID] = p
		}
	}
	deadline := time.Now().Add(60 * time.Second)
	for len(pending) > 0 && time.Now().Before(deadline) {
		time.Sleep(500 * time.Millisecond)
		for k, p := range pending {
			if n, err := prom.Query(p.Expr); err == nil && n > 0 {
				delete(pending, k)
			}
		}
	}
	for k, p := range pending {
		t.Errorf("panel %s returns no data after 60s:\n  %s", k, p.Expr)
	}
}

// alertMetrics returns the directord metrics the alert rules' expressions
// name, so a rule waiting for a metric under another name (or one that was
// renamed) fails here instead of never firing.
func alertMetrics(t *testing.T) []string {
	t.Helper()
	data, err := os.ReadFile("prometheus/rules.yml")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var out []string
	for _, line := range strings.Split(string(data), "\n") {
		_, expr, ok := strings.Cut(line, "expr:")
		if !ok {
			continue
		}
		for _, m := range metricName.FindAllString(expr, -1) {
			if !seen[m] {
				seen[m] = true
				out = append(out, m)
			}
		}
	}
	if len(out) < 5 {
		t.Fatalf("found only %d metrics in the alert rules; the walk is broken", len(out))
	}
	return out
}

// metricName matches a directord metric name in PromQL.
var metricName = regexp.MustCompile(`directord_[a-z_]+`)

func needsIPVSOrBGPMetrics(expr string) bool {
	for _, m := range needsIPVSOrBGP {
		if strings.Contains(expr, m) {
			return true
		}
	}
	return false
}
