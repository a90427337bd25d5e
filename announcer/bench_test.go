package announcer

import (
	"fmt"
	"net/netip"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
)

// bigConfig has n services with b backends each, on distinct VIPs.
func bigConfig(n, b int) *config.Config {
	var svcs []config.Service
	for i := 0; i < n; i++ {
		vip := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		var backends []string
		for j := 0; j < b; j++ {
			backends = append(backends, netip.AddrFrom4([4]byte{10, byte(j + 1), byte(i >> 8), byte(i)}).String())
		}
		svcs = append(svcs, webService(fmt.Sprintf("s%d", i), vip.String(), 1, backends...))
	}
	return testConfig(svcs...)
}

// BenchmarkPlanAndDiff measures one reconcile's pure work at scale: plan() for
// 10,000 services x 5 backends, then ipvs.Diff against a kernel state that
// differs by one weight. Target: under 50 ms.
func BenchmarkPlanAndDiff(b *testing.B) {
	cfg := bigConfig(10000, 5)
	snap := health.Snapshot{}
	for _, t := range Targets(cfg) {
		snap[t.Key()] = health.Result{State: health.Up, Probes: 1}
	}
	mem := Memory{Learned: true}
	first := plan(Input{Config: cfg, Health: snap, Now: t0, Memory: mem})
	// The kernel holds destinations in the canonical list order, as the
	// plan lists them; one weight differs.
	have := make([]ipvs.Service, len(first.IPVS))
	for i, s := range first.IPVS {
		s.Destinations = slices.Clone(s.Destinations)
		have[i] = s
	}
	have[0].Destinations[0].Weight = 7
	mem = first.Memory
	keys := TargetKeys(cfg)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	var ops int
	for i := 0; i < b.N; i++ {
		p := plan(Input{Config: cfg, Health: snap, Now: t0.Add(time.Hour), Memory: mem, Keys: keys})
		ops = len(ipvs.Diff(p.IPVS, have, t0.Add(time.Hour)))
	}
	b.StopTimer()
	cpu := cpuTime() - cpu0
	if ops != 1 {
		b.Fatalf("Diff found %d ops, want 1", ops)
	}
	b.ReportMetric(float64(b.Elapsed().Milliseconds())/float64(b.N), "ms/plan+diff")
	// CPU time (all threads, GC included) per pass: steadier than the wall
	// clock on a shared machine.
	b.ReportMetric(float64(cpu.Milliseconds())/float64(b.N), "cpu-ms/plan+diff")
}

// cpuTime is the process's user+system CPU time so far.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
