package control

import (
	"net/netip"
	"testing"
	"time"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
)

// BenchmarkStatusToProto measures converting one snapshot of 1,000 services x
// 10 backends: the cost GetStatus pays once per published snapshot (the
// result is cached until the next pass).
func BenchmarkStatusToProto(b *testing.B) {
	st := &announcer.Status{Director: "bench", Config: announcer.ConfigVersion{Version: 1, Loaded: time.Now()}}
	for i := range 1000 {
		vip := netip.AddrFrom4([4]byte{198, 18, byte(i / 250), byte(i%250 + 1)})
		key := ipvs.Key{VIP: vip, Port: 80, Protocol: 6}
		st.VIPs = append(st.VIPs, announcer.VIPStatus{VIP: vip, Advertised: true, Reason: "healthy 10/10",
			Services: []string{"svc"}, Since: time.Now()})
		svc := announcer.ServiceStatus{Name: "svc", Key: key, Forwarding: "dr", Scheduler: "mh", Flags: []string{"mh-port"},
			Healthy: 10, Total: 10, MinHealthy: 1, Programmed: true, Fingerprint: "10/0123456789abcdef"}
		for j := range 10 {
			svc.Backends = append(svc.Backends, announcer.BackendStatus{BackendPlan: announcer.BackendPlan{
				Address: netip.AddrFrom4([4]byte{10, byte(2 + i/250), byte(i % 250), byte(j + 1)}), Port: 80,
				Health: health.Result{State: health.Up, Reason: "2/2 probes passed", Latency: time.Millisecond,
					Since: time.Now(), LastProbe: time.Now(), Probes: 9},
				Configured: 1, Effective: 1, Reason: "healthy"}})
		}
		st.Services = append(st.Services, svc)
	}
	for b.Loop() {
		if r := statusToProto(st); len(r.GetServices()) != 1000 {
			b.Fatal("wrong conversion")
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/op")
}
