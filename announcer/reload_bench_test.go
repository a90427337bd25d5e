package announcer

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/internal/benchconfig"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/statedir"
)

// BenchmarkReloadOneWeight measures what SIGHUP does in the side-by-side
// benchmark's reload: parse the file with real server 1's weight changed in
// every service, load it on the loop, and run the pass that programs it
// (fake kernel and health checks, a real state directory), until IPVS has
// every new weight. It reports the milliseconds from parse to applied, and
// the CPU time they took.
func BenchmarkReloadOneWeight(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) { benchReload(b, n) })
	}
}

func benchReload(b *testing.B, n int) {
	dir := b.TempDir()
	parse := func(w1 int) *config.Config {
		cfg, err := config.Parse("/etc/directord/directord.yaml", benchconfig.Compare(n, w1, dir))
		if err != nil {
			b.Fatal(err)
		}
		return cfg
	}
	cfg := parse(1)
	w := newWorld(b)
	for i := range cfg.Services {
		w.allow[cfg.Services[i].VIP] = true
	}
	all := map[string]health.State{}
	for j := range 10 {
		all[fmt.Sprintf("10.100.0.%d", 10+j)] = health.Up
	}
	w.setHealth(healthOf(cfg, all))
	l, ctx := runBenchLoop(b, cfg, w, dir)
	waitWeight(b, w, l, 0, 1)
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := range b.N {
		weight := 2 + i%2
		v, err := l.Reload(ctx, parse(weight))
		if err != nil {
			b.Fatal(err)
		}
		waitWeight(b, w, l, v.Version, weight)
	}
	cpu := cpuTime() - cpu0
	b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/reload")
	// CPU time (all threads, GC included): steadier than the wall clock on
	// a shared machine.
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/reload")
}

// runBenchLoop runs a loop on cfg against w's fakes, with a real state
// directory in dir and logs discarded, until the benchmark ends.
func runBenchLoop(b *testing.B, cfg *config.Config, w *world, dir string) (*Loop, context.Context) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := statedir.NewStore(dir)
	restored := store.Restore(time.Now())
	wr := statedir.NewWriter(store, log, statedir.WriterOptions{Restored: restored})
	l := New(cfg, w.deps(), log, Options{State: wr, Restored: &restored})
	ctx, cancel := context.WithCancel(b.Context())
	done := make(chan struct{})
	go func() { defer close(done); _ = l.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done; wr.Close() })
	return l, ctx
}

// waitWeight waits until a pass of configuration version v (0: any) has
// programmed real server 1 at weight in every service of the fake kernel.
func waitWeight(b *testing.B, w *world, l *Loop, v, weight int) {
	b.Helper()
	addr := netip.MustParseAddr("10.100.0.11")
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Microsecond) {
		if s := l.Status(); s == nil || (v != 0 && s.Config.Version < v) {
			continue
		}
		if allWeights(w, addr, weight) {
			return
		}
	}
	b.Fatalf("weight %d not applied within a minute", weight)
}

// allWeights reports whether addr has weight in every service of the fake
// kernel.
func allWeights(w *world, addr netip.Addr, weight int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if len(w.services) == 0 {
		return false
	}
	for _, s := range w.services {
		if !hasWeight(s, addr, weight) {
			return false
		}
	}
	return true
}

func hasWeight(s ipvs.Service, addr netip.Addr, weight int) bool {
	for _, d := range s.Destinations {
		if d.Address == addr {
			return d.Weight == weight
		}
	}
	return false
}

// BenchmarkTargets measures building the health targets of the side-by-side
// benchmark's configuration, which every reload does (with the keys the loop
// already holds).
func BenchmarkTargets(b *testing.B) {
	for _, n := range []int{100, 1000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			cfg, err := config.Parse("directord.yaml", benchconfig.Compare(n, 1, b.TempDir()))
			if err != nil {
				b.Fatal(err)
			}
			keys := TargetKeys(cfg)
			b.ReportAllocs()
			for b.Loop() {
				if got := len(targetsKeyed(cfg, keys)); got != 10*n {
					b.Fatalf("%d targets, want %d", got, 10*n)
				}
			}
		})
	}
}
