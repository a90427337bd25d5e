//go:build linux && privileged

package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
	"github.com/anycast-director/director/routing"
)

// BenchmarkPrivilegedSetToFIB measures, against real FRR, the time from
// handing a whole set to a speaker (Set, in the helper process) to the
// router's kernel FIB change, for an announce and for a withdraw. The FIB
// change is taken from `ip monitor route` in the router namespace, not from
// polling. Each iteration is one announce and one withdraw; run it with
// -benchtime 20x for 20 samples:
//
//	go test -tags privileged -run '^$' -bench PrivilegedSetToFIB -benchtime 20x ./routing/bgp/
func BenchmarkPrivilegedSetToFIB(b *testing.B) {
	l := newBGPLab(b, labOptions{directors: 1})
	sp := l.startSpeaker(1, nil)
	netlab.MustWait(b, 15*time.Second, "session established", func() error { return l.established(dirAddr4(1)) })
	mon := l.rtr.MonitorRoutes()

	var announce, withdraw []time.Duration
	b.ResetTimer()
	for range b.N {
		mon.Skip()
		start := time.Now()
		sp.set(vip4Ad)
		announce = append(announce, waitRouteEvent(b, mon, false, start))
		start = time.Now()
		sp.set()
		withdraw = append(withdraw, waitRouteEvent(b, mon, true, start))
	}
	b.StopTimer()
	reportDurations(b, "announce", announce)
	reportDurations(b, "withdraw", withdraw)
}

// waitRouteEvent waits for the VIP's route to appear (or, with deleted, to
// go) in the router's FIB and returns the time since start.
func waitRouteEvent(b *testing.B, mon *netlab.RouteMonitor, deleted bool, start time.Time) time.Duration {
	b.Helper()
	for {
		line, at, err := mon.Wait(5*time.Second, vip4)
		if err != nil {
			b.Fatal(err)
		}
		if strings.HasPrefix(line, "Deleted") == deleted {
			return at.Sub(start)
		}
	}
}

// reportDurations reports the median, 90th percentile and maximum in ms.
func reportDurations(b *testing.B, name string, ds []time.Duration) {
	slices.Sort(ds)
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	b.ReportMetric(ms(ds[len(ds)/2]), name+"-median-ms")
	b.ReportMetric(ms(ds[len(ds)*9/10]), name+"-p90-ms")
	b.ReportMetric(ms(ds[len(ds)-1]), name+"-max-ms")
	b.Logf("%s over %d runs: median %s, p90 %s, max %s", name, len(ds), ds[len(ds)/2], ds[len(ds)*9/10], ds[len(ds)-1])
}

// BenchmarkPrivilegedAdvertise10k measures how long 10,000 VIPs take from
// the start of one Set (the speaker's own work included) to all being in the
// router's kernel FIB, and back out after Set(nil), with the CPU time the
// router's bgpd and zebra spent on it:
//
//	go test -tags privileged -run '^$' -bench PrivilegedAdvertise10k -benchtime 1x ./routing/bgp/
func BenchmarkPrivilegedAdvertise10k(b *testing.B) {
	const n = 10000
	l := newBGPLab(b, labOptions{directors: 1})
	sp := l.startSpeaker(1, nil)
	netlab.MustWait(b, 15*time.Second, "session established", func() error { return l.established(dirAddr4(1)) })
	ads := make([]routing.Advertisement, n)
	allowed := make([]netip.Prefix, n)
	for i := range n {
		allowed[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 19, byte(i / 256), byte(i % 256)}), 32)
		ads[i] = routing.Advertisement{Prefix: allowed[i]}
	}
	if err := sp.do(helperCmd{Op: "allow", Allowed: allowed}); err != nil {
		b.Fatal(err)
	}
	cpu := func() time.Duration {
		var total time.Duration
		for _, d := range []string{"bgpd", "zebra"} {
			c, err := netlab.CPUTime(l.frr.PID(d))
			if err != nil {
				b.Fatal(err)
			}
			total += c
		}
		return total
	}
	count := func(want int) func() error {
		return func() error {
			got, err := l.rtr.CountRoutes(false, "bgp")
			if err != nil {
				return err
			}
			if got != want {
				return fmt.Errorf("%d bgp routes in the FIB, want %d", got, want)
			}
			return nil
		}
	}
	var up, down, upCPU, downCPU, speakerCPU time.Duration
	b.ResetTimer()
	for range b.N {
		c0, s0 := cpu(), mustCPU(b, sp.proc.PID)
		// The clock starts before Set: handing 10,000 routes to GoBGP is
		// part of the figure.
		start := time.Now()
		sp.set(ads...)
		if _, err := netlab.Wait(120*time.Second, 50*time.Millisecond, count(n)); err != nil {
			b.Fatal(err)
		}
		up += time.Since(start)
		c1 := cpu()
		upCPU += c1 - c0
		speakerCPU += mustCPU(b, sp.proc.PID) - s0
		start = time.Now()
		sp.set()
		if _, err := netlab.Wait(120*time.Second, 50*time.Millisecond, count(0)); err != nil {
			b.Fatal(err)
		}
		down += time.Since(start)
		downCPU += cpu() - c1
	}
	b.StopTimer()
	per := func(d time.Duration) float64 { return d.Seconds() / float64(b.N) }
	b.ReportMetric(per(up), "announce-10k-s")
	b.ReportMetric(per(upCPU), "router-cpu-announce-s")
	b.ReportMetric(per(speakerCPU), "speaker-cpu-announce-s")
	b.ReportMetric(per(down), "withdraw-10k-s")
	b.ReportMetric(per(downCPU), "router-cpu-withdraw-s")
}

func mustCPU(b *testing.B, pid int) time.Duration {
	b.Helper()
	c, err := netlab.CPUTime(pid)
	if err != nil {
		b.Fatal(err)
	}
	return c
}
