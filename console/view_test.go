package console

import (
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// fakeStatus builds a director's status: web on 198.18.0.10 with two backends
// (the second's health given), the service fingerprint, and one peer.
func fakeStatus(name, fp string, second directorv1.HealthState, peer directorv1.PeerState) *directorv1.GetStatusResponse {
	b := func(addr string, h directorv1.HealthState, active int64, conns uint64) *directorv1.Backend {
		return &directorv1.Backend{Address: addr, Port: 80, Health: &directorv1.Health{State: h}, EffectiveWeight: 1, ConfiguredWeight: 1,
			Counters: &directorv1.IPVSCounters{ActiveConns: active, Connections: conns}}
	}
	return &directorv1.GetStatusResponse{Director: name, IpvsFingerprint: "1/" + fp,
		Vips: []*directorv1.VIP{{Address: "198.18.0.10", State: directorv1.VIPState_VIP_STATE_ADVERTISED, Services: []string{"web"}}},
		Services: []*directorv1.Service{{Name: "web", Vip: "198.18.0.10", Port: 80, Forwarding: directorv1.Forwarding_FORWARDING_DR,
			Programmed: true, Fingerprint: fp, Healthy: 2, Total: 2,
			Backends: []*directorv1.Backend{b("10.0.2.21", directorv1.HealthState_HEALTH_STATE_UP, 3, 100), b("10.0.2.22", second, 1, 50)}}},
		Peers: []*directorv1.Peer{{Address: "10.0.1.1", Asn: 65000, State: peer, BfdState: directorv1.BFDState_BFD_STATE_UP,
			Since: timestamppb.New(time.Unix(1700000000, 0))}}}
}

// TestBuildViewFlagsDisagreements: rows where connected directors differ are
// flagged (health, fingerprints); an unreachable director neither counts
// nor hides the others; counters become per-second rates.
func TestBuildViewFlagsDisagreements(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	r1, r2 := newRates(), newRates()
	s1 := fakeStatus("d1", "aaaa", directorv1.HealthState_HEALTH_STATE_UP, directorv1.PeerState_PEER_STATE_ESTABLISHED)
	s2 := fakeStatus("d2", "bbbb", directorv1.HealthState_HEALTH_STATE_DOWN, directorv1.PeerState_PEER_STATE_ACTIVE)
	r1.observe(s1, t0)
	s1later := fakeStatus("d1", "aaaa", directorv1.HealthState_HEALTH_STATE_UP, directorv1.PeerState_PEER_STATE_ESTABLISHED)
	s1later.Services[0].Backends[0].Counters.Connections = 150 // +50 in 5 s
	snaps := []snapshot{
		{name: "d1", status: s1later, rates: r1.observe(s1later, t0.Add(5*time.Second))},
		{name: "d2", status: s2, rates: r2.observe(s2, t0)},
		{name: "d3", err: "connection refused (Unavailable)"},
	}
	v := buildView(snaps, nil, t0)
	if len(v.Directors) != 3 || v.Directors[2].Connected || v.Directors[2].Error == "" || !v.Directors[0].Connected {
		t.Fatalf("directors = %+v", v.Directors)
	}
	if !v.Directors[0].Mismatch || !v.Directors[1].Mismatch || v.Directors[2].Mismatch {
		t.Errorf("director fingerprints 1/aaaa and 1/bbbb not flagged (or d3 flagged): %+v", v.Directors)
	}
	web := v.Services[0]
	if !web.Mismatch || web.Fingerprints["d1"] != "aaaa" || web.Fingerprints["d2"] != "bbbb" {
		t.Errorf("service fingerprints: %+v mismatch %t", web.Fingerprints, web.Mismatch)
	}
	if web.Backends[0].Disagree || !web.Backends[1].Disagree {
		t.Errorf("backend disagreement: first %t (both up), second %t (up vs down)", web.Backends[0].Disagree, web.Backends[1].Disagree)
	}
	if v.VIPs[0].Disagree {
		t.Errorf("the VIP is advertised on both connected directors but flagged")
	}
	c := web.Backends[0].Cells["d1"]
	if c.Active != 3 || c.CPS != 10 {
		t.Errorf("d1's first backend: %d active, %v new/s; want 3 and 10", c.Active, c.CPS)
	}
	if web.Backends[0].Total.Active != 6 {
		t.Errorf("total active = %d, want 6 over both directors", web.Backends[0].Total.Active)
	}
	if len(v.Peers) != 2 || v.Peers[0].State != "established" || v.Peers[1].State != "active" || v.Peers[0].BFD != "up" {
		t.Errorf("peers = %+v", v.Peers)
	}
	// The same fingerprints everywhere: nothing flagged.
	s2.Services[0].Fingerprint, s2.IpvsFingerprint = "aaaa", "1/aaaa"
	s2.Services[0].Backends[1].Health.State = directorv1.HealthState_HEALTH_STATE_UP
	v = buildView(snaps[:2], nil, t0)
	if v.Services[0].Mismatch || v.Directors[0].Mismatch || v.Services[0].Backends[1].Disagree {
		t.Errorf("agreeing directors flagged: %+v", v.Services[0])
	}
}

// TestRatesRestartOnCounterReset: a destination re-created (counters back
// to 0) does not give a negative rate.
func TestRatesRestartOnCounterReset(t *testing.T) {
	t0 := time.Unix(1700000000, 0)
	r := newRates()
	for i, conns := range []uint64{100, 200, 5} {
		st := fakeStatus("d1", "a", directorv1.HealthState_HEALTH_STATE_UP, directorv1.PeerState_PEER_STATE_ESTABLISHED)
		st.Services[0].Backends[0].Counters.Connections = conns
		got := r.observe(st, t0.Add(time.Duration(i)*time.Second))["web/10.0.2.21:80"]
		if got.CPS < 0 || (i == 1 && got.CPS != 100) || (i == 2 && got.CPS != 0) {
			t.Errorf("sample %d: %v new/s", i, got.CPS)
		}
	}
}
