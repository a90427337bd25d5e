package announcer

import (
	"fmt"
	"github.com/anycast-director/director/ipvs"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
)

// t0 is the tests' reference time.
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func mustAddr(t testing.TB, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// testConfig builds a typed configuration the way the loader would, so the
// announcer tests do not depend on YAML.
func testConfig(services ...config.Service) *config.Config {
	return &config.Config{
		Source: "test.yaml",
		Director: config.Director{
			Name: "d1", VIPInterface: "lo", Announce: config.AnnounceNone,
			HoldDown: 2 * time.Second, DrainDelay: 10 * time.Second,
			ResyncInterval: time.Second, MaxFailedResyncs: 3,
			GracefulShutdown: 3 * time.Second, Linger: time.Second,
		},
		API:      config.API{KeepConfigs: 3},
		Services: services,
	}
}

// webService is an mh service with the given backends (weight 1 each).
func webService(name, vip string, minHealthy int, backends ...string) config.Service {
	s := config.Service{
		Name: name, VIP: netip.MustParseAddr(vip), Port: 80, Protocol: config.TCP,
		Scheduler: "mh", SchedulerFlags: []string{"mh-port"}, Forwarding: config.ForwardDR,
		MinHealthy: minHealthy,
		Health: config.Check{Type: config.CheckTCP, Interval: time.Second, Timeout: 500 * time.Millisecond,
			Rise: 1, Fall: 1},
	}
	for _, b := range backends {
		s.Backends = append(s.Backends, config.Backend{Address: netip.MustParseAddr(b), Port: 80, Weight: 1})
	}
	return s
}

// healthOf builds a snapshot giving each backend address of cfg a state.
func healthOf(cfg *config.Config, states map[string]health.State) health.Snapshot {
	snap := health.Snapshot{}
	for i := range cfg.Services {
		svc := &cfg.Services[i]
		for _, b := range backendsOf(svc) {
			st, ok := states[b.Address.String()]
			if !ok || st == health.Unknown {
				continue
			}
			r := health.Result{State: st, Reason: st.String(), Probes: 1}
			if st == health.Down {
				r.LastError = "connect: connection refused" // down after a failed probe
			}
			snap[targetFor(svc, b).Key()] = r
		}
	}
	return snap
}

func sortStrings(s []string) { sort.Strings(s) }

func testKey(vip string) ipvs.Key {
	return ipvs.Key{VIP: netip.MustParseAddr(vip), Port: 80, Protocol: 6}
}

// destWeights renders a service's destinations as "addr:port=weight ...",
// in address order for reading.
func destWeights(s ipvs.Service) string {
	var parts []string
	for _, d := range s.Destinations {
		parts = append(parts, fmt.Sprintf("%s=%d", netip.AddrPortFrom(d.Address, d.Port), d.Weight))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}
