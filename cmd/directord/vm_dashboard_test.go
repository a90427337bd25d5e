//go:build vm

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/internal/promtest"
	"github.com/anycast-director/director/routing/routerconfig"
)

// TestVMDashboardQueries runs every query of deploy/grafana/directord.json
// against a real Prometheus scraping a director that has everything the
// dashboard shows: IPVS services with traffic (DR and IP-in-IP), health
// checks, and a BGP session with BFD to FRR as the router. Every query must
// return data. (deploy's TestDashboardQueries covers a local-only director
// on the host, where IPVS and peers cannot exist.)
func TestVMDashboardQueries(t *testing.T) {
	data, err := os.ReadFile("../../deploy/grafana/directord.json")
	if err != nil {
		t.Fatal(err)
	}
	panels, err := promtest.DashboardQueries(data)
	if err != nil {
		t.Fatal(err)
	}
	l := newVMLab(t)
	l.writeConfig(2)
	withBGPPeer(t, l.cfgPath)
	cfg, err := config.Load(l.cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	frr, err := routerconfig.Generate("frr", []*config.Config{cfg}, routerconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l.client.StartFRR(string(frr), "bgpd", "bfdd")
	kern, err := openIPVSReader(nsPath(l.director))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kern.close)
	d := l.startDaemon()
	for seen, skip := map[string]bool{}, 0; !seen[webVIP] || !seen[tunVIP]; {
		line, i, err := d.WaitOutput(`msg="VIP advertised"`, skip, 90*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		for _, vip := range []string{webVIP, tunVIP} {
			seen[vip] = seen[vip] || strings.Contains(line, "vip="+vip+" ")
		}
		skip = i + 1
	}
	waitKernel(t, kern, "both services with all destinations", 60*time.Second, func(k map[string]kernelService) error {
		if w, u := len(order(k, webKey)), len(order(k, tunKey)); w != 3 || u != 2 {
			return fmt.Errorf("web has %d destinations, tun %d; want 3 and 2", w, u)
		}
		return nil
	})

	promDir := filepath.Join(l.dir, "prometheus")
	if err := os.Mkdir(promDir, 0o755); err != nil {
		t.Fatal(err)
	}
	prom, err := promtest.Start(promtest.Options{Dir: promDir, Targets: []string{metricsAddr}, Listen: "127.0.0.1:9090",
		Prefix: []string{"ip", "netns", "exec", l.director.Name}, Dial: nsDialer(nsPath(l.director))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(prom.Stop)

	pending := map[string]promtest.Panel{}
	for _, p := range panels {
		if _, err := prom.Query(p.Expr); err != nil {
			t.Errorf("panel %q query %s does not evaluate: %v\n  %s", p.Title, p.RefID, err, p.Expr)
			continue
		}
		pending[p.Title+"/"+p.RefID] = p
	}
	deadline := time.Now().Add(3 * time.Minute)
	for len(pending) > 0 && time.Now().Before(deadline) {
		// Traffic keeps the IPVS rates above zero while Prometheus scrapes.
		l.spread(webVIP, 5)
		l.spread(tunVIP, 5)
		for k, p := range pending {
			if n, err := prom.Query(p.Expr); err == nil && n > 0 {
				delete(pending, k)
			}
		}
	}
	for k, p := range pending {
		t.Errorf("panel %s returns no data:\n  %s", k, p.Expr)
	}
	t.Logf("%d dashboard queries returned data", len(panels)-len(pending))
}

// withBGPPeer switches the lab configuration to announce: bgp with the
// client namespace as the router (FRR), BFD on.
func withBGPPeer(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(data), "  announce: none\n", "  announce: bgp\n", 1)
	out += fmt.Sprintf(`bgp:
  asn: 65100
  router_id: %s
  peers:
    - { address: %s, asn: 65000, local_address: %s, hold_time: 9s, bfd: { min_interval: 300ms, multiplier: 5 } }
`, directorIP, clientIP, directorIP)
	if out == string(data) {
		t.Fatal("the lab configuration has no announce: none line")
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}
