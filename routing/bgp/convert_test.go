package bgp

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/osrg/gobgp/v4/api"
	"google.golang.org/protobuf/testing/protocmp"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/routing"
)

func TestPeerToAPI(t *testing.T) {
	v4 := &api.Family{Afi: api.Family_AFI_IP, Safi: api.Family_SAFI_UNICAST}
	v6 := &api.Family{Afi: api.Family_AFI_IP6, Safi: api.Family_SAFI_UNICAST}
	afs := func(fs ...*api.Family) []*api.AfiSafi {
		var out []*api.AfiSafi
		for _, f := range fs {
			out = append(out, &api.AfiSafi{Config: &api.AfiSafiConfig{Family: f, Enabled: true}})
		}
		return out
	}
	tests := []struct {
		name string
		in   config.Peer
		bfd  bool
		want *api.Peer
	}{
		{
			name: "minimal: family from the address, idle hold raised to 1s",
			in:   config.Peer{Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000},
			want: &api.Peer{
				Conf:      &api.PeerConf{NeighborAddress: "10.0.1.1", PeerAsn: 65000},
				Transport: &api.Transport{},
				Timers:    &api.Timers{Config: &api.TimersConfig{IdleHoldTimeAfterReset: 1}},
				AfiSafis:  afs(v4),
			},
		},
		{
			name: "everything set; sub-second timers round up", bfd: true,
			in: config.Peer{
				Address: netip.MustParseAddr("2001:db8::1"), ASN: 65000, Port: 1179, LocalAddress: netip.MustParseAddr("2001:db8::2"),
				HoldTime: 3 * time.Second, Keepalive: time.Second, ConnectRetry: 1500 * time.Millisecond, IdleHoldAfterReset: 2 * time.Second,
				Passive: true, MultihopTTL: 2, Password: "k", BFD: &config.BFD{MinInterval: 100 * time.Millisecond, Multiplier: 3},
				IPv4: true, IPv6: true,
			},
			want: &api.Peer{
				Conf:         &api.PeerConf{NeighborAddress: "2001:db8::1", PeerAsn: 65000, AuthPassword: "k"},
				Transport:    &api.Transport{LocalAddress: "2001:db8::2", RemotePort: 1179, PassiveMode: true},
				Timers:       &api.Timers{Config: &api.TimersConfig{HoldTime: 3, KeepaliveInterval: 1, ConnectRetry: 2, IdleHoldTimeAfterReset: 2}},
				EbgpMultihop: &api.EbgpMultihop{Enabled: true, MultihopTtl: 2},
				Bfd:          &api.BfdPeerConfig{Enabled: true, DesiredMinimumTxInterval: 100000, RequiredMinimumReceive: 100000, DetectionMultiplier: 3},
				AfiSafis:     afs(v4, v6),
			},
		},
		{
			name: "bfd configured but the session is not up yet: no BFD",
			in:   config.Peer{Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000, BFD: &config.BFD{MinInterval: 100 * time.Millisecond, Multiplier: 3}},
			want: &api.Peer{
				Conf:      &api.PeerConf{NeighborAddress: "10.0.1.1", PeerAsn: 65000},
				Transport: &api.Transport{},
				Timers:    &api.Timers{Config: &api.TimersConfig{IdleHoldTimeAfterReset: 1}},
				AfiSafis:  afs(v4),
			},
		},
		{
			name: "gtsm: one hop means minimum TTL 255",
			in:   config.Peer{Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000, TTLSecurity: 1, IPv4: true},
			want: &api.Peer{
				Conf:        &api.PeerConf{NeighborAddress: "10.0.1.1", PeerAsn: 65000},
				Transport:   &api.Transport{},
				Timers:      &api.Timers{Config: &api.TimersConfig{IdleHoldTimeAfterReset: 1}},
				TtlSecurity: &api.TtlSecurity{Enabled: true, TtlMin: 255},
				AfiSafis:    afs(v4),
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if d := cmp.Diff(tc.want, peerToAPI(tc.in, tc.bfd, nil), protocmp.Transform()); d != "" {
				t.Errorf("peerToAPI (-want +got):\n%s", d)
			}
		})
	}
}

func TestComparePeer(t *testing.T) {
	base := config.Peer{Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000, HoldTime: 3 * time.Second, BFD: &config.BFD{MinInterval: 100 * time.Millisecond, Multiplier: 3}}
	tests := []struct {
		name string
		edit func(*config.Peer)
		want peerChange
	}{
		{"same values, different BFD pointer", func(p *config.Peer) { p.BFD = &config.BFD{MinInterval: 100 * time.Millisecond, Multiplier: 3} }, peerSame},
		{"hold time", func(p *config.Peer) { p.HoldTime = 9 * time.Second }, peerTimers},
		{"bfd timers", func(p *config.Peer) { p.BFD = &config.BFD{MinInterval: 300 * time.Millisecond, Multiplier: 3} }, peerTimers},
		{"bfd off", func(p *config.Peer) { p.BFD = nil }, peerTimers},
		{"password", func(p *config.Peer) { p.Password = "new" }, peerSession},
		{"asn", func(p *config.Peer) { p.ASN = 65001 }, peerSession},
		{"families", func(p *config.Peer) { p.IPv6 = true }, peerSession},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			next := base
			tc.edit(&next)
			if got := comparePeer(base, next); got != tc.want {
				t.Errorf("comparePeer = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	good := func() *config.BGP {
		return &config.BGP{ASN: 65100, RouterID: netip.MustParseAddr("10.0.0.1"), Peers: []config.Peer{
			{Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000, HoldTime: 3 * time.Second},
		}}
	}
	tests := []struct {
		name string
		edit func(*config.BGP)
		want []string // substrings of the error; none means valid
	}{
		{"valid", func(*config.BGP) {}, nil},
		{"no asn, ipv6 router id", func(c *config.BGP) { c.ASN = 0; c.RouterID = netip.MustParseAddr("::1") }, []string{"bgp.asn is 0", "router_id ::1 is not an IPv4"}},
		{"duplicate peer", func(c *config.BGP) { c.Peers = append(c.Peers, c.Peers[0]) }, []string{"configured twice"}},
		{"short hold time", func(c *config.BGP) { c.Peers[0].HoldTime = time.Second }, []string{"below 3s"}},
		{"keepalive not below hold", func(c *config.BGP) { c.Peers[0].Keepalive = 3 * time.Second }, []string{"must be shorter"}},
		{"multihop with gtsm", func(c *config.BGP) { c.Peers[0].MultihopTTL = 2; c.Peers[0].TTLSecurity = 1 }, []string{"exclude each other"}},
		{"bfd multiplier 0", func(c *config.BGP) { c.Peers[0].BFD = &config.BFD{MinInterval: time.Second} }, []string{"multiplier 0"}},
		{"local address family", func(c *config.BGP) { c.Peers[0].LocalAddress = netip.MustParseAddr("::2") }, []string{"different families"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := good()
			tc.edit(c)
			err := validate(c)
			if len(tc.want) == 0 {
				if err != nil {
					t.Fatalf("validate: %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("validate: nil, want errors containing %q", tc.want)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("validate error %q does not contain %q", err, w)
				}
			}
		})
	}
	if err := validate(nil); err == nil {
		t.Errorf("validate(nil): want an error")
	}
}

func TestNewRoute(t *testing.T) {
	tests := []struct {
		name    string
		in      routing.Advertisement
		want    route
		wantErr string
	}{
		{
			name: "communities sorted and deduplicated, shutdown community added, prefix masked",
			in: routing.Advertisement{
				Prefix: netip.MustParsePrefix("198.18.0.10/32"), Communities: []uint32{20, 10, 20}, GracefulShutdown: true,
				LargeCommunities: [][3]uint32{{2, 0, 0}, {1, 5, 6}, {1, 5, 6}}, MED: ptr(uint32(9)), ASPathPrepend: 3,
			},
			want: route{
				prefix: netip.MustParsePrefix("198.18.0.10/32"), communities: []uint32{10, 20, routing.GracefulShutdownCommunity},
				large: [][3]uint32{{1, 5, 6}, {2, 0, 0}}, med: 9, hasMED: true, prepend: 3,
			},
		},
		{
			name:    "invalid prefix",
			in:      routing.Advertisement{},
			wantErr: "invalid prefix",
		},
		{
			name:    "prepend out of range",
			in:      routing.Advertisement{Prefix: netip.MustParsePrefix("198.18.0.10/32"), ASPathPrepend: 17},
			wantErr: "out of range",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := newRoute(tc.in)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("newRoute error = %v, want one containing %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatalf("newRoute: %v", err)
			}
			if d := cmp.Diff(tc.want, got, cmp.AllowUnexported(route{}), netipCmp()); d != "" {
				t.Errorf("newRoute (-want +got):\n%s", d)
			}
		})
	}
}

func TestDiffRoutes(t *testing.T) {
	r := func(p string, med uint32) route {
		rt, err := newRoute(routing.Advertisement{Prefix: netip.MustParsePrefix(p), MED: &med})
		if err != nil {
			t.Fatal(err)
		}
		return rt
	}
	a, b, c, d := r("198.18.0.1/32", 0), r("198.18.0.2/32", 0), r("198.18.0.3/32", 0), r("198.18.0.4/32", 0)
	sent := map[netip.Prefix]sentRoute{
		a.prefix: {route: a},                // unchanged
		b.prefix: {route: b},                // MED changes
		c.prefix: {route: c},                // no longer wanted
		d.prefix: {route: d, unknown: true}, // earlier call failed: resend
	}
	want := map[netip.Prefix]route{a.prefix: a, b.prefix: r("198.18.0.2/32", 5), d.prefix: d, netip.MustParsePrefix("198.18.0.5/32"): r("198.18.0.5/32", 0)}
	got := diffRoutes(sent, want)
	prefixes := func(rs []route) []string {
		var out []string
		for _, r := range rs {
			out = append(out, r.prefix.String())
		}
		return out
	}
	if d := cmp.Diff([]string{"198.18.0.2/32", "198.18.0.4/32", "198.18.0.5/32"}, prefixes(got.announce)); d != "" {
		t.Errorf("announce (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]string{"198.18.0.3/32"}, prefixes(got.withdraw)); d != "" {
		t.Errorf("withdraw (-want +got):\n%s", d)
	}
}

// TestPeerToAPIGracefulRestart: with graceful_restart every family carries
// the capability, with the restart time in seconds, Restart State and
// Forwarding State set (GoBGP's "local restarting").
func TestPeerToAPIGracefulRestart(t *testing.T) {
	p := config.Peer{Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000, IPv4: true, IPv6: true}
	got := peerToAPI(p, false, &config.GracefulRestart{RestartTime: 30 * time.Second})
	want := &api.GracefulRestart{Enabled: true, RestartTime: 30, DeferralTime: 7, LocalRestarting: true}
	if d := cmp.Diff(want, got.GracefulRestart, protocmp.Transform()); d != "" {
		t.Errorf("graceful restart (-want +got):\n%s", d)
	}
	if len(got.AfiSafis) != 2 {
		t.Fatalf("families %v, want ipv4 and ipv6", got.AfiSafis)
	}
	for _, af := range got.AfiSafis {
		if !af.GetMpGracefulRestart().GetConfig().GetEnabled() {
			t.Errorf("family %v has no graceful restart", af.Config.Family)
		}
	}
	if off := peerToAPI(p, false, nil); off.GracefulRestart != nil || off.AfiSafis[0].MpGracefulRestart != nil {
		t.Errorf("without graceful_restart: %v", off)
	}
}

func TestBFDRestarts(t *testing.T) {
	bfd := func(ms int, m uint8) *config.BFD {
		return &config.BFD{MinInterval: time.Duration(ms) * time.Millisecond, Multiplier: m}
	}
	tests := []struct {
		name     string
		old, new *config.BFD
		want     bool
	}{
		{"off to on", nil, bfd(100, 3), false},
		{"unchanged", bfd(100, 3), bfd(100, 3), false},
		{"interval", bfd(100, 3), bfd(300, 3), true},
		{"multiplier", bfd(100, 3), bfd(100, 5), true},
		{"on to off", bfd(100, 3), nil, true},
		{"stays off", nil, nil, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := bfdRestarts(config.Peer{BFD: tc.old}, config.Peer{BFD: tc.new}); got != tc.want {
				t.Errorf("bfdRestarts = %v, want %v", got, tc.want)
			}
		})
	}
}
