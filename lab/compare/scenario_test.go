package compare

import (
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
)

func testScenario(shared bool) Scenario {
	return Scenario{Services: 250, RealServers: 10, Shared: shared, Interval: 2 * time.Second, Timeout: time.Second, Fall: 3}
}

func baseWeights(n int) Weights {
	w := make(Weights, n)
	for j := range w {
		w[j] = 1
	}
	return w
}

// TestDirectordConfigLoads checks that the rendered configuration is one
// directord accepts, with the settings the comparison states.
func TestDirectordConfigLoads(t *testing.T) {
	for _, shared := range []bool{false, true} {
		s := testScenario(shared)
		w := baseWeights(s.RealServers)
		w[1] = 2
		cfg, err := config.Parse("bench.yaml", []byte(s.DirectordConfig(w, "/run/bench")))
		if err != nil {
			t.Fatalf("%s: %v", s.Name(), err)
		}
		if len(cfg.Services) != s.Services {
			t.Fatalf("%s: %d services, want %d", s.Name(), len(cfg.Services), s.Services)
		}
		seen := map[netip.AddrPort]bool{}
		for i, svc := range cfg.Services {
			if svc.VIP != VIP(i) || svc.Port != s.Port(i) || len(svc.Backends) != s.RealServers {
				t.Fatalf("%s: service %d is %s:%d with %d backends", s.Name(), i, svc.VIP, svc.Port, len(svc.Backends))
			}
			if svc.Backends[1].Weight != 2 || svc.Backends[0].Weight != 1 {
				t.Fatalf("%s: weights %d, %d; want 1, 2", s.Name(), svc.Backends[0].Weight, svc.Backends[1].Weight)
			}
			for _, b := range svc.Backends {
				seen[netip.AddrPortFrom(b.Address, svc.Port)] = true
			}
		}
		if len(seen) != s.Targets() {
			t.Errorf("%s: %d distinct targets, want %d", s.Name(), len(seen), s.Targets())
		}
	}
}

// TestKeepalivedConfigParses runs keepalived's own configuration test on the
// rendered file, and checks the settings that make the checks equivalent.
func TestKeepalivedConfigParses(t *testing.T) {
	s := testScenario(false)
	text := s.KeepalivedConfig(baseWeights(s.RealServers))
	for _, want := range []string{"delay_loop 2\n", "connect_timeout 1\n", "retry 2\n", "delay_before_retry 2\n", "inhibit_on_failure", "lb_algo mh"} {
		if !strings.Contains(text, want) {
			t.Errorf("keepalived.conf lacks %q", want)
		}
	}
	if n := strings.Count(text, "real_server "); n != s.Services*s.RealServers {
		t.Errorf("%d real_server blocks, want %d", n, s.Services*s.RealServers)
	}
	bin, err := exec.LookPath("keepalived")
	if err != nil {
		t.Skip("keepalived is not installed (bash scripts/deps.sh installs it)")
	}
	path := filepath.Join(t.TempDir(), "keepalived.conf")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(bin, "--config-test", "--use-file", path).CombinedOutput()
	if err != nil {
		t.Fatalf("keepalived --config-test: %v\n%s", err, out)
	}
}

func TestSeconds(t *testing.T) {
	for d, want := range map[time.Duration]string{2 * time.Second: "2", 1500 * time.Millisecond: "1.5", 250 * time.Millisecond: "0.25"} {
		if got := seconds(d); got != want {
			t.Errorf("seconds(%s) = %q, want %q", d, got, want)
		}
	}
}
