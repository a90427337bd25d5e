package metrics

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/health/check"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/routing"
)

// statusBox hands out a snapshot the test can replace between scrapes.
type statusBox struct {
	mu sync.Mutex
	st *announcer.Status
}

func (b *statusBox) get() *announcer.Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.st
}

func (b *statusBox) set(s *announcer.Status) {
	b.mu.Lock()
	b.st = s
	b.mu.Unlock()
}

// sampleStatus is a director with one advertised VIP, an IPVS service with a
// healthy and a drained backend, a local service, and a BGP peer. conns
// scales the IPVS counters.
func sampleStatus(conns uint64) *announcer.Status {
	vip := netip.MustParseAddr("198.18.0.10")
	key := ipvs.Key{VIP: vip, Port: 80, Protocol: 6}
	up := health.Result{State: health.Up, Probes: 4, Latency: 2 * time.Millisecond}
	down := health.Result{State: health.Down, Probes: 4, Latency: 500 * time.Millisecond}
	return &announcer.Status{
		Director: "d1",
		Config:   announcer.ConfigVersion{Version: 2, Digest: "abcdef012345", Loaded: time.Unix(1_700_000_000, 0)},
		LastPass: time.Unix(1_700_000_100, 0),
		VIPs: []announcer.VIPStatus{
			{VIP: vip, Advertised: true, Reason: "healthy 1/2"},
			{VIP: netip.MustParseAddr("127.0.0.10"), Reason: "below min_healthy 0/1"},
		},
		Services: []announcer.ServiceStatus{
			{Name: "web", Key: key, Forwarding: "dr", Fingerprint: "2/0123456789abcdef", Healthy: 1, Total: 2, MinHealthy: 1, Programmed: true,
				Counters: ipvs.Stats{Connections: conns, PacketsIn: 3 * conns, PacketsOut: 2 * conns, BytesIn: 100 * conns, BytesOut: 900 * conns},
				Backends: []announcer.BackendStatus{
					{BackendPlan: announcer.BackendPlan{Address: netip.MustParseAddr("10.0.2.21"), Port: 80, Health: up, Configured: 1, Effective: 1},
						Counters: ipvs.Stats{ActiveConns: 3, Connections: conns, PacketsIn: conns, BytesIn: 50 * conns}},
					{BackendPlan: announcer.BackendPlan{Address: netip.MustParseAddr("10.0.2.22"), Port: 80, Health: down, Configured: 1, Draining: true}},
				}},
			{Name: "local", Key: ipvs.Key{VIP: netip.MustParseAddr("127.0.0.10"), Port: 8080, Protocol: 6}, Forwarding: "local",
				Total: 1, MinHealthy: 1, Programmed: true,
				Backends: []announcer.BackendStatus{{BackendPlan: announcer.BackendPlan{Address: netip.MustParseAddr("127.0.0.10"), Port: 8080, Configured: 1}}}},
		},
		Peers: []routing.PeerStatus{{Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000, State: "established", BFDState: "up", Flaps: conns / 10, Advertised: 1}},
		Overrides: announcer.Overrides{Drained: map[announcer.BackendRef]announcer.Note{
			{Service: "web", Addr: netip.MustParseAddr("10.0.2.22")}: {Reason: "test"}},
			DisabledVIPs: map[netip.Addr]announcer.Note{netip.MustParseAddr("127.0.0.10"): {Reason: "test"}}},
		HealthLoad: &health.Load{Overloaded: true, Reason: "3 probes started late in 1s", Stretch: 2, TransitStretch: 1.25,
			Demanded: 1000, Achieved: 480.5, InFlight: 12,
			Skipped:   map[string]uint64{health.SkipBusy: 4, health.SkipLimit: 0, health.SkipLate: conns},
			Discarded: 7},
		Sync: ipvs.SyncStatus{Configured: true, Error: "start IPVS sync daemon backup: no such device",
			Daemons: []ipvs.SyncDaemon{{State: ipvs.SyncMaster, Interface: "eth1", SyncID: 7}}},
	}
}

func newTestMetrics(t *testing.T, box *statusBox) *Metrics {
	t.Helper()
	m, err := New(Options{Status: box.get, Version: "v0.0.0-test", Revision: "abc123", BuildDate: "2026-12-01T10:00:00Z"})
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// scrape fetches /metrics through the mux.
func scrape(t *testing.T, m *Metrics) string {
	t.Helper()
	rec := httptest.NewRecorder()
	m.Mux().ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %s", rec.Code, rec.Body)
	}
	return rec.Body.String()
}

// sample returns the value of the exposition line that starts with series.
func sample(t *testing.T, text, series string) string {
	t.Helper()
	for line := range strings.Lines(text) {
		if rest, ok := strings.CutPrefix(line, series+" "); ok {
			return strings.TrimSpace(rest)
		}
	}
	t.Errorf("no sample %s in the scrape", series)
	return ""
}

func TestScrapePassesPromtool(t *testing.T) {
	promtool, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatalf("promtool not found (%v): install Debian's prometheus package (scripts/deps.sh does)", err)
	}
	box := &statusBox{st: sampleStatus(100)}
	m := newTestMetrics(t, box)
	m.OnProbe(health.Target{Spec: check.Spec{Type: check.TCP}}, true, time.Millisecond, nil)
	m.OnProbe(health.Target{Spec: check.Spec{Type: check.HTTP}}, false, time.Second, context.DeadlineExceeded)
	m.OnPass(3*time.Millisecond, nil)
	m.OnPass(time.Millisecond, errors.New("program IPVS: boom"))
	m.ObserveReload(time.Unix(1_700_000_200, 0), errors.New("bad file"))
	m.DeclareRepairKinds("ipvs_service", "vip_address")
	m.ObserveRepair("ipvs_service")
	text := scrape(t, m)

	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = strings.NewReader(text)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out.String())
	}
	if out.Len() > 0 {
		t.Errorf("promtool check metrics has findings:\n%s", out.String())
	}
	// Every metric of ours has the prefix; spot-check the families.
	want := map[string]string{
		`directord_vip_advertised{vip="198.18.0.10"}`:                                                   "1",
		`directord_vip_advertised{vip="127.0.0.10"}`:                                                    "0",
		`directord_vip_disabled{vip="127.0.0.10"}`:                                                      "1",
		`directord_vip_disabled{vip="198.18.0.10"}`:                                                     "0",
		`directord_backend_health_state{backend="10.0.2.22:80",service="web",state="down"}`:             "1",
		`directord_backend_health_state{backend="10.0.2.22:80",service="web",state="up"}`:               "0",
		`directord_backend_effective_weight{backend="10.0.2.21:80",service="web"}`:                      "1",
		`directord_backend_effective_weight{backend="10.0.2.22:80",service="web"}`:                      "0",
		`directord_backend_draining{backend="10.0.2.22:80",service="web"}`:                              "1",
		`directord_backend_check_latency_seconds{backend="10.0.2.22:80",service="web"}`:                 "0.5",
		`directord_checks_total{result="success",type="tcp"}`:                                           "1",
		`directord_checks_total{result="timeout",type="http"}`:                                          "1",
		`directord_check_duration_seconds_count{result="timeout",type="http"}`:                          "1",
		`directord_peer_up{peer="10.0.1.1"}`:                                                            "1",
		`directord_peer_state{peer="10.0.1.1",state="established"}`:                                     "1",
		`directord_peer_state{peer="10.0.1.1",state="idle"}`:                                            "0",
		`directord_peer_flaps_total{peer="10.0.1.1"}`:                                                   "10",
		`directord_ipvs_service_connections_total{service="web"}`:                                       "100",
		`directord_ipvs_service_bytes_total{direction="out",service="web"}`:                             "90000",
		`directord_ipvs_destination_packets_total{backend="10.0.2.21:80",direction="in",service="web"}`: "100",
		`directord_ipvs_destination_active_connections{backend="10.0.2.21:80",service="web"}`:           "3",
		`directord_reconcile_duration_seconds_count`:                                                    "2",
		`directord_reconcile_errors_total`:                                                              "1",
		`directord_config_reloads_total{result="failure"}`:                                              "1",
		`directord_config_last_reload_successful`:                                                       "0",
		`directord_config_last_reload_success_timestamp_seconds`:                                        "1.7e+09",
		`directord_config_info{digest="abcdef012345",version="2"}`:                                      "1",
		`directord_overrides{kind="drain_backend"}`:                                                     "1",
		`directord_service_healthy_backends{service="web"}`:                                             "1",
		`directord_ipvs_sync_ok`:                                                                        "0",
		`directord_ipvs_sync_daemon_running{state="master"}`:                                            "1",
		`directord_ipvs_sync_daemon_running{state="backup"}`:                                            "0",
		`directord_drift_repairs_total{kind="ipvs_service"}`:                                            "1",
		`directord_drift_repairs_total{kind="vip_address"}`:                                             "0",
	}
	got := map[string]string{}
	for series := range want {
		got[series] = sample(t, text, series)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("samples (-want +got):\n%s", diff)
	}
	if !strings.Contains(text, `directord_build_info{builddate="2026-12-01T10:00:00Z",goversion="go`) ||
		!strings.Contains(text, `revision="abc123",version="v0.0.0-test"} 1`) {
		t.Errorf("build info missing or incomplete")
	}
	// A local service has no IPVS counters.
	if strings.Contains(text, `directord_ipvs_service_connections_total{service="local"}`) {
		t.Errorf("IPVS counters exported for a local service")
	}
}

func TestCountersMoveBetweenScrapes(t *testing.T) {
	box := &statusBox{st: sampleStatus(100)}
	m := newTestMetrics(t, box)
	tcp := health.Target{Spec: check.Spec{Type: check.TCP}}
	m.OnProbe(tcp, true, time.Millisecond, nil)
	first := scrape(t, m)

	for range 5 {
		m.OnProbe(tcp, true, time.Millisecond, nil)
	}
	m.OnProbe(tcp, false, time.Millisecond, errors.New("connect: connection refused"))
	box.set(sampleStatus(250))
	second := scrape(t, m)

	tests := []struct{ series, before, after string }{
		{`directord_checks_total{result="success",type="tcp"}`, "1", "6"},
		{`directord_checks_total{result="failure",type="tcp"}`, "", "1"},
		{`directord_ipvs_service_connections_total{service="web"}`, "100", "250"},
		{`directord_ipvs_destination_bytes_total{backend="10.0.2.21:80",direction="in",service="web"}`, "5000", "12500"},
	}
	for _, tt := range tests {
		t.Run(tt.series, func(t *testing.T) {
			if tt.before != "" {
				if got := sample(t, first, tt.series); got != tt.before {
					t.Errorf("first scrape: %s, want %s", got, tt.before)
				}
			}
			if got := sample(t, second, tt.series); got != tt.after {
				t.Errorf("second scrape: %s, want %s", got, tt.after)
			}
		})
	}
}

func TestServeOnAListener(t *testing.T) {
	box := &statusBox{st: sampleStatus(1)}
	m := newTestMetrics(t, box)
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan error, 1)
	go func() { done <- m.ServeListener(ctx, lis) }()
	resp, err := http.Get("http://" + lis.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "directord_vip_advertised") {
		t.Errorf("GET /metrics = %d, body lacks directord_vip_advertised", resp.StatusCode)
	}
	if !strings.Contains(string(body), "process_resident_memory_bytes") {
		t.Errorf("process metrics missing")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServeListener = %v after cancel", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServeListener did not stop")
	}
	if _, err := New(Options{}); err == nil {
		t.Errorf("New without Status succeeded")
	}
}

// BenchmarkOnProbe is the metrics cost of one completed probe, which the
// health scheduler's tcp engine pays inline for every probe.
func BenchmarkOnProbe(b *testing.B) {
	m, err := New(Options{Status: func() *announcer.Status { return &announcer.Status{} }, NoProcessMetrics: true})
	if err != nil {
		b.Fatal(err)
	}
	t := health.Target{Spec: check.Spec{Type: check.TCP}}
	b.ReportAllocs()
	for b.Loop() {
		m.OnProbe(t, true, 50*time.Microsecond, nil)
	}
}
