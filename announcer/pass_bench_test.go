package announcer

import (
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/internal/benchconfig"
)

// BenchmarkHealthChangePass measures the pass a health change causes in the
// side-by-side benchmark's configuration: real server 3 goes down (then up)
// in every service, and the loop programs weight 0 (then 1) everywhere. It
// reports the milliseconds from the change to applied and the CPU time
// (all threads, GC included) they took, which is what a director spends per
// pass while it learns or while backends change at scale.
func BenchmarkHealthChangePass(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchHealthPass(b, n) })
	}
}

func benchHealthPass(b *testing.B, n int) {
	dir := b.TempDir()
	cfg, err := config.Parse("/etc/directord/directord.yaml", benchconfig.Compare(n, 1, dir))
	if err != nil {
		b.Fatal(err)
	}
	w := newWorld(b)
	for i := range cfg.Services {
		w.allow[cfg.Services[i].VIP] = true
	}
	states := func(third health.State) health.Snapshot {
		all := map[string]health.State{}
		for j := range 10 {
			all[fmt.Sprintf("10.100.0.%d", 10+j)] = health.Up
		}
		all["10.100.0.12"] = third
		return healthOf(cfg, all)
	}
	up, down := states(health.Up), states(health.Down)
	w.setHealth(up)
	runBenchLoop(b, cfg, w, dir)
	third := netip.MustParseAddr("10.100.0.12")
	waitAll(b, w, third, 1)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		snap, weight := down, 0
		if i%2 == 1 {
			snap, weight = up, 1
		}
		w.setHealth(snap)
		waitAll(b, w, third, weight)
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/pass")
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/pass")
}

// waitAll waits until addr has weight in every service of the fake kernel.
func waitAll(b *testing.B, w *world, addr netip.Addr, weight int) {
	b.Helper()
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Microsecond) {
		if allWeights(w, addr, weight) {
			return
		}
	}
	b.Fatalf("weight %d not applied within a minute", weight)
}
