package config

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// cmpConfig compares netip.Addr by value and ignores Source, Digest, Content and
// Warnings unless a test looks at them itself.
func cmpConfig() []cmp.Option {
	return []cmp.Option{
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmpopts.IgnoreFields(Config{}, "Source", "Digest", "Content", "Warnings"),
		cmpopts.EquateEmpty(),
	}
}

func mustParse(t *testing.T, yaml string) *Config {
	t.Helper()
	c, err := Parse("test.yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("Parse failed:\n%v", err)
	}
	return c
}

// TestDefaults: a minimal file expands to exactly the values of defaults.go.
func TestDefaults(t *testing.T) {
	got := mustParse(t, `
director: { name: d1 }
services:
  - name: web
    vip: 198.18.0.10
    port: 80
    backends: [ { address: 10.0.2.21 } ]
`)
	want := &Config{
		Director: Director{
			Name: "d1", VIPInterface: DefaultVIPInterface, Announce: AnnounceNone,
			HoldDown: DefaultHoldDown, DrainDelay: DefaultDrainDelay, ResyncInterval: DefaultResyncInterval,
			MaxFailedResyncs: DefaultMaxFailedResyncs, GracefulShutdown: DefaultGracefulShutdown, Linger: DefaultLinger,
			StateDir: DefaultStateDir, VIPBinding: BindingAuto,
		},
		API:     API{Socket: DefaultAPISocket, KeepConfigs: DefaultKeepConfigs},
		Metrics: Metrics{Listen: DefaultMetricsListen},
		Log:     Log{Format: DefaultLogFormat, Level: DefaultLogLevel},
		Kernel:  Kernel{Table: DefaultKernelTable, Protocol: DefaultKernelProtocol},
		IPVS:    IPVS{ManageSysctls: DefaultManageSysctls},
		Services: []Service{{
			Name: "web", VIP: netip.MustParseAddr("198.18.0.10"), Port: 80,
			Protocol: DefaultProtocol, Scheduler: DefaultScheduler, SchedulerFlags: []string{"mh-fallback", "mh-port"},
			Forwarding: DefaultForwarding, MinHealthy: DefaultMinHealthy,
			Health: Check{
				Type: DefaultCheckType, Interval: DefaultCheckInterval, Timeout: DefaultCheckTimeout,
				Rise: DefaultRise, Fall: DefaultFall, TLSVerify: DefaultTLSVerify,
			},
			Backends: []Backend{{Address: netip.MustParseAddr("10.0.2.21"), Port: 80, Weight: DefaultWeight}},
		}},
	}
	if diff := cmp.Diff(want, got, cmpConfig()...); diff != "" {
		t.Errorf("defaults (-want +got):\n%s", diff)
	}
	// The values the brief and the docs promise, spelled out once so that a
	// changed constant is a deliberate act (docs/configuration.md lists them).
	promised := []struct {
		name      string
		got, want any
	}{
		{"scheduler", DefaultScheduler, "mh"},
		{"forwarding", DefaultForwarding, ForwardDR},
		{"protocol", DefaultProtocol, TCP},
		{"interval", DefaultCheckInterval, 2 * time.Second},
		{"timeout", DefaultCheckTimeout, time.Second},
		{"rise", DefaultRise, 2},
		{"fall", DefaultFall, 3},
		{"hold_down", DefaultHoldDown, time.Second},
		{"drain_delay", DefaultDrainDelay, 10 * time.Second},
		{"resync_interval", DefaultResyncInterval, 5 * time.Second},
		{"max_failed_resyncs", DefaultMaxFailedResyncs, 3},
		{"graceful_shutdown", DefaultGracefulShutdown, 3 * time.Second},
		{"linger", DefaultLinger, 2 * time.Second},
		{"hold_time", DefaultHoldTime, 9 * time.Second},
		{"connect_retry", DefaultConnectRetry, time.Second},
		{"idle_hold_after_reset", DefaultIdleHoldAfterReset, time.Second},
		{"metrics", DefaultMetricsListen, "127.0.0.1:9469"},
		{"socket", DefaultAPISocket, "/run/directord/directord.sock"},
		{"keep_configs", DefaultKeepConfigs, 10},
	}
	for _, p := range promised {
		if p.got != p.want {
			t.Errorf("default %s = %v, want %v", p.name, p.got, p.want)
		}
	}
}

// TestDerivedDefaults covers the defaults that depend on other values.
func TestDerivedDefaults(t *testing.T) {
	c := mustParse(t, `
director: { name: d1 }
bgp:
  asn: 65100
  router_id: 10.0.1.11
  peers:
    - { address: 10.0.1.1, asn: 65000 }
    - { address: "2001:db8::1", asn: 65000, hold_time: 3s }
    - { address: 10.0.1.2, asn: 65000, hold_time: 0s }
    - { address: 10.0.1.3, asn: 65000, hold_time: 30s, bfd: {} }
services:
  - name: fast
    vip: 198.18.0.10
    port: 80
    health: { interval: 500ms, type: http }
    backends: [ { address: 10.0.2.21, port: 80 } ]
  - name: wlc
    vip: 198.18.0.11
    port: 80
    scheduler: wlc
    health: { type: dns, query: example.com }
    backends: [ { address: 10.0.2.21 } ]
  - name: none
    vip: 198.18.0.12
    port: 80
    scheduler_flags: []
    forwarding: local
`)
	if c.Director.Announce != AnnounceBGP {
		t.Errorf("announce = %v, want bgp (a bgp section exists)", c.Director.Announce)
	}
	type peerTimers struct {
		Hold, Keepalive time.Duration
		IPv4, IPv6      bool
		BFD             *BFD
	}
	var gotPeers []peerTimers
	for _, p := range c.BGP.Peers {
		gotPeers = append(gotPeers, peerTimers{p.HoldTime, p.Keepalive, p.IPv4, p.IPv6, p.BFD})
	}
	wantPeers := []peerTimers{
		{9 * time.Second, 3 * time.Second, true, false, nil},
		{3 * time.Second, time.Second, false, true, nil},
		{0, 0, true, false, nil},
		{30 * time.Second, 10 * time.Second, true, false, &BFD{MinInterval: 300 * time.Millisecond, Multiplier: 3}},
	}
	if diff := cmp.Diff(wantPeers, gotPeers); diff != "" {
		t.Errorf("peer defaults (-want +got):\n%s", diff)
	}
	for _, p := range c.BGP.Peers {
		if p.Port != 179 || p.ConnectRetry != time.Second || p.IdleHoldAfterReset != time.Second {
			t.Errorf("peer %s: port %d connect_retry %s idle_hold %s, want 179 1s 1s", p.Address, p.Port, p.ConnectRetry, p.IdleHoldAfterReset)
		}
	}
	if c.BGP.ListenPort != 179 {
		t.Errorf("listen_port = %d, want 179", c.BGP.ListenPort)
	}
	fast := c.Services[0].Health
	if fast.Timeout != 250*time.Millisecond || fast.Method != "GET" || fast.Path != "/" || !cmp.Equal(fast.ExpectStatus, []int{200}) {
		t.Errorf("fast http check = %+v, want timeout 250ms (half the interval), GET /, [200]", fast)
	}
	wlc := c.Services[1]
	if len(wlc.SchedulerFlags) != 0 || wlc.Health.QueryType != "A" || wlc.Health.RCode != "NOERROR" {
		t.Errorf("wlc service = flags %v, dns %s/%s; want no flags, A/NOERROR", wlc.SchedulerFlags, wlc.Health.QueryType, wlc.Health.RCode)
	}
	none := c.Services[2]
	if len(none.SchedulerFlags) != 0 {
		t.Errorf("explicit empty scheduler_flags gave %v, want none", none.SchedulerFlags)
	}
	wantTargets := []netip.AddrPort{netip.MustParseAddrPort("198.18.0.12:80")}
	if diff := cmp.Diff(wantTargets, none.HealthTargets(), cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
		t.Errorf("local service without backends: targets (-want +got):\n%s", diff)
	}
}

// TestFullFile checks that every key of testdata/valid/full.yaml lands in the
// right field, with no default involved.
func TestFullFile(t *testing.T) {
	c, err := Load("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	ip := netip.MustParseAddr
	u32 := func(v uint32) *uint32 { return &v }
	adv := Advertise{
		Communities:      []uint32{65100<<16 | 100, 65100<<16 | 200},
		LargeCommunities: [][3]uint32{{65100, 1, 2}},
		MED:              u32(10), ShutdownMED: u32(1000), ASPathPrepend: 2,
	}
	want := &Config{
		Director: Director{
			Name: "edge-d1", VIPInterface: "vips0", Announce: AnnounceBGP, HoldDown: 2 * time.Second,
			DrainDelay: 30 * time.Second, ResyncInterval: 10 * time.Second, MaxFailedResyncs: 5,
			GracefulShutdown: 5 * time.Second, Linger: 4 * time.Second,
			StateDir: "/srv/directord", VIPBinding: BindingLocalRoute,
		},
		API: API{Socket: "/run/directord/api.sock", KeepConfigs: 20, TCP: &TCPAPI{
			Listen: "[::]:9470", Cert: "/etc/directord/tls/server.pem", Key: "/etc/directord/tls/server.key",
			ClientCA: "/etc/directord/tls/clients.pem",
		}},
		Metrics: Metrics{Listen: ""},
		Log:     Log{Format: "json", Level: "debug"},
		BGP: &BGP{
			ASN: 65100, RouterID: ip("10.0.1.11"), ListenPort: 1179,
			ListenAddresses: []netip.Addr{ip("10.0.1.11"), ip("2001:db8:1::11")},
			Peers: []Peer{
				{
					Address: ip("10.0.1.1"), ASN: 65000, Port: 179, LocalAddress: ip("10.0.1.11"),
					HoldTime: 6 * time.Second, Keepalive: 2 * time.Second, ConnectRetry: 2 * time.Second,
					IdleHoldAfterReset: 3 * time.Second, Passive: true, Password: "s3cret", PasswordFrom: "inline",
					BFD: &BFD{MinInterval: 100 * time.Millisecond, Multiplier: 5}, IPv4: true,
				},
				{
					Address: ip("2001:db8:1::1"), ASN: 65000, Port: 179, HoldTime: 0, Keepalive: 0,
					ConnectRetry: time.Second, IdleHoldAfterReset: time.Second, MultihopTTL: 2, IPv6: true,
				},
				{
					Address: ip("10.0.3.1"), ASN: 65000, Port: 179, HoldTime: DefaultHoldTime, Keepalive: DefaultHoldTime / 3,
					ConnectRetry: time.Second, IdleHoldAfterReset: time.Second, TTLSecurity: 1, IPv4: true,
				},
			},
		},
		Kernel: Kernel{Table: DefaultKernelTable, Protocol: DefaultKernelProtocol},
		IPVS: IPVS{ManageSysctls: false, Sysctls: map[string]int{
			"sloppy_tcp": 1, "expire_nodest_conn": 1, "conn_reuse_mode": 0,
		}, Sync: &Sync{Interface: "eth1", SyncID: 42, Group: ip("ff02::81"), Port: 9000, TTL: 2, MaxMessage: 8000}},
		Services: []Service{
			{
				Name: "web", VIP: ip("198.18.0.10"), Port: 80, Protocol: TCP, Scheduler: "sh",
				SchedulerFlags: []string{"sh-port", "sh-fallback"}, Persistence: 300 * time.Second,
				Forwarding: ForwardNAT, MinHealthy: 2,
				Health: Check{
					Type: CheckHTTP, Interval: 3 * time.Second, Timeout: 2 * time.Second, Rise: 3, Fall: 2,
					Port: 8081, Source: ip("10.0.2.1"), Method: "HEAD", Path: "/healthz", Host: "www.example.com",
					ExpectStatus: []int{200, 204}, ExpectBody: "ok",
				},
				Advertise: adv,
				Backends: []Backend{
					{Address: ip("10.0.2.21"), Port: 8080, Weight: 100},
					{Address: ip("10.0.2.22"), Port: 8080, Weight: 0},
				},
			},
			{
				Name: "web-tls", VIP: ip("198.18.0.10"), Port: 443, Protocol: TCP, Scheduler: "mh",
				SchedulerFlags: []string{"mh-fallback", "mh-port"}, Forwarding: ForwardTunnel, MinHealthy: 1,
				Health: Check{
					Type: CheckHTTPS, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3,
					Method: "GET", Path: "/", ExpectStatus: []int{200}, TLSServerName: "www.example.com", TLSVerify: true,
				},
				Advertise: adv,
				Backends:  []Backend{{Address: ip("10.0.2.21"), Port: 443, Weight: 1}},
			},
			{
				Name: "dns", VIP: ip("2001:db8::53"), Port: 53, Protocol: UDP, Scheduler: "mh",
				Forwarding: ForwardDR, MinHealthy: 1,
				Health: Check{
					Type: CheckDNS, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3,
					Query: "example.com.", QueryType: "AAAA", RCode: "NXDOMAIN",
				},
				Backends: []Backend{{Address: ip("2001:db8::21"), Port: 53, Weight: 1}, {Address: ip("2001:db8::22"), Port: 53, Weight: 1}},
			},
			{
				Name: "syslog", VIP: ip("198.18.0.11"), Port: 514, Protocol: UDP, Scheduler: "wrr",
				Forwarding: ForwardDR, MinHealthy: 1,
				Health: Check{
					Type: CheckUDP, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3,
					Payload: "ping\n", Expect: "pong",
				},
				Backends: []Backend{{Address: ip("10.0.2.31"), Port: 514, Weight: 3}},
			},
			{
				Name: "db", VIP: ip("198.18.0.12"), Port: 5432, Protocol: TCP, Scheduler: "mh",
				SchedulerFlags: []string{"mh-fallback", "mh-port"}, Forwarding: ForwardDR, MinHealthy: 1,
				Health: Check{
					Type: CheckExec, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3,
					Command: []string{"/usr/local/bin/check-db", "--quick"},
				},
				Backends: []Backend{{Address: ip("10.0.2.41"), Port: 5432, Weight: 1}},
			},
			{
				Name: "resolver", VIP: ip("198.18.0.53"), Port: 53, Protocol: TCP, Scheduler: "mh",
				SchedulerFlags: []string{"mh-fallback", "mh-port"}, Forwarding: ForwardLocal, MinHealthy: 0,
				Health: Check{Type: CheckTCP, Interval: 2 * time.Second, Timeout: time.Second, Rise: 2, Fall: 3, Port: 5353},
			},
		},
	}
	if diff := cmp.Diff(want, c, cmpConfig()...); diff != "" {
		t.Errorf("full.yaml (-want +got):\n%s", diff)
	}
}
