//go:build linux && vm

package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/ipvs"
)

// benchSize is the scale of BenchmarkVMScale: 10,000 services x 5
// destinations unless IPVS_BENCH_SERVICES / IPVS_BENCH_DESTS say otherwise
// (for quick runs while developing).
func benchSize(tb testing.TB) (services, dests int) {
	services, dests = 10000, 5
	for name, p := range map[string]*int{"IPVS_BENCH_SERVICES": &services, "IPVS_BENCH_DESTS": &dests} {
		if v := os.Getenv(name); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n < 1 {
				tb.Fatalf("%s=%q: want a positive number", name, v)
			}
			*p = n
		}
	}
	return services, dests
}

// scaleState is n mh services (port flag) on distinct VIPs, each with d DR
// destinations of their own.
func scaleState(n, d int) []ipvs.Service {
	out := make([]ipvs.Service, n)
	for i := range n {
		vip := netip.AddrFrom4([4]byte{100, 64 + byte(i>>16), byte(i >> 8), byte(i)})
		s := ipvs.Service{Key: ipvs.Key{VIP: vip, Port: 80, Protocol: 6}, Scheduler: "mh", Flags: []string{"mh-port"}}
		for j := range d {
			a := netip.AddrFrom4([4]byte{10, byte(1 + j), byte(i >> 8), byte(i)})
			s.Destinations = append(s.Destinations, ipvs.Destination{Address: a, Port: 80, Weight: 1, Forwarding: ipvs.DirectRoute})
		}
		// In canonical order, as the announcer's plan lists them: in any
		// other order every Apply compares a sorted copy, a path directord
		// does not take (it made the no-op Apply five times slower).
		ipvs.SortCanonical(s.Destinations)
		out[i] = s
	}
	return out
}

// restoreInput is the same state as ipvsadm-restore input. Destinations are
// listed in ascending order, the order Apply inserts them, so both tools
// build identical kernel lists.
func restoreInput(want []ipvs.Service) string {
	var b strings.Builder
	for _, s := range want {
		vip := netip.AddrPortFrom(s.Key.VIP, s.Key.Port)
		fmt.Fprintf(&b, "-A -t %s -s %s -b %s\n", vip, s.Scheduler, strings.Join(s.Flags, ","))
		ds := slices.Clone(s.Destinations)
		ipvs.SortCanonical(ds)
		slices.Reverse(ds)
		for _, d := range ds {
			fmt.Fprintf(&b, "-a -t %s -r %s -g -w %d\n", vip, netip.AddrPortFrom(d.Address, d.Port), d.Weight)
		}
	}
	return b.String()
}

// benchRounds is how many times cold Apply and ipvsadm-restore are each
// measured (IPVS_BENCH_ROUNDS, default 3).
func benchRounds(tb testing.TB) int {
	n := 3
	if v := os.Getenv("IPVS_BENCH_ROUNDS"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 {
			tb.Fatalf("IPVS_BENCH_ROUNDS=%q: want a positive number", v)
		}
	}
	return n
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[len(s)/2]
}

func timed(f func()) time.Duration {
	start := time.Now()
	f()
	return time.Since(start)
}

// BenchmarkVMScale measures, inside the VM, against the real kernel:
// cold Apply of the scale state, the same content through Debian's
// ipvsadm-restore in a fresh namespace, adoption of that namespace, no-op
// Applies (incremental and with a full kernel read) and single weight
// changes. Run it once: -test.benchtime=1x (scripts/bench-ipvs.sh).
func BenchmarkVMScale(b *testing.B) {
	nSvc, nDst := benchSize(b)
	ctx := context.Background()
	for range b.N {
		want := scaleState(nSvc, nDst)
		wantOps := nSvc * (1 + nDst)
		if nDst >= 2 {
			wantOps += nSvc // mh is bound after the destinations (diffService)
		}

		input := filepath.Join(b.TempDir(), "rules")
		if err := os.WriteFile(input, []byte(restoreInput(want)), 0o644); err != nil {
			b.Fatal(err)
		}
		var rep Report
		var err error
		var adopt time.Duration
		var adoptReads int
		var restoredFP string

		// Debian's ipvsadm-restore loads the content into a fresh namespace;
		// in the first round a daemon then adopts that state: it reads all of
		// it and, content and order being equal, writes nothing.
		restoreRound := func(first bool) time.Duration {
			r := newNetns(b)
			d := timed(func() {
				f, err := os.Open(input)
				if err != nil {
					b.Fatal(err)
				}
				defer f.Close()
				cmd := exec.Command("ip", "netns", "exec", r.name, "ipvsadm-restore")
				cmd.Stdin = f
				if out, err := cmd.CombinedOutput(); err != nil {
					b.Fatalf("ipvsadm-restore: %v: %s", err, out)
				}
			})
			if first {
				hr, ckr := openCounted(b, r)
				adopt = timed(func() { rep, err = hr.Apply(ctx, want) })
				if err != nil || len(rep.Failed) > 0 || ckr.writes != 0 {
					b.Fatalf("adopting the ipvsadm-restore state: err %v, %d failed, %d writes; want none", err, len(rep.Failed), ckr.writes)
				}
				adoptReads, restoredFP = rep.Reads, rep.Fingerprint.Get(want[0].Key)
				hr.Close()
			}
			// One namespace with services at a time: the kernel's
			// /proc/net/ip_vs listing skips entries otherwise (procread.go).
			r.del(b)
			time.Sleep(3 * time.Second) // the namespace's IPVS is freed asynchronously
			return d
		}
		// Cold Apply into an empty namespace; the last one is kept.
		var a netns
		var h *Handle
		var ck *countingKernel
		coldRound := func(keep bool) time.Duration {
			a = newNetns(b)
			h, ck = openCounted(b, a, WithResyncInterval(time.Hour))
			d := timed(func() { rep, err = h.Apply(ctx, want) })
			if err != nil || len(rep.Failed) > 0 || rep.Ops != wantOps || ck.writes != wantOps {
				b.Fatalf("cold Apply: err %v, %d failed, %d ops, %d writes; want %d", err, len(rep.Failed), rep.Ops, ck.writes, wantOps)
			}
			if fp := rep.Fingerprint.Get(want[0].Key); fp != restoredFP {
				b.Fatalf("fingerprints differ between Apply and ipvsadm-restore: %s vs %s", fp, restoredFP)
			}
			if !keep {
				h.Close()
				a.del(b)
				time.Sleep(3 * time.Second)
			}
			return d
		}
		// The host is shared and the VM emulated: alternate the two tools
		// over several rounds and compare medians.
		rounds := benchRounds(b)
		var colds, restores, ratios []time.Duration
		for i := range rounds {
			var c, r time.Duration
			if i%2 == 0 {
				r = restoreRound(i == 0)
				c = coldRound(i == rounds-1)
			} else {
				c = coldRound(false)
				r = restoreRound(false)
			}
			colds, restores = append(colds, c), append(restores, r)
			ratios = append(ratios, time.Duration(float64(c)/float64(r)*1e6))
		}
		if rounds%2 == 0 { // the last round ran cold first and deleted it
			colds = append(colds, coldRound(true))
		}
		cold, restore, ratio := median(colds), median(restores), float64(median(ratios))/1e6
		b.Logf("cold Apply rounds %v, ipvsadm-restore rounds %v", colds, restores)

		// No-op Applies: trusting the record, and with a full kernel read.
		before := ck.writes
		// Each phase starts with a collection, so it is not charged for the
		// garbage of the one before (the full reads leave tens of MB).
		runtime.GC()
		var noops []time.Duration
		for range 11 {
			noops = append(noops, timed(func() { rep, err = h.Apply(ctx, want) }))
			if err != nil || rep.Ops != 0 || rep.FullRead {
				b.Fatalf("incremental no-op: err %v, ops %d, full read %v", err, rep.Ops, rep.FullRead)
			}
		}
		noopIncr := median(noops)
		var fulls []time.Duration
		pprof.Do(ctx, pprof.Labels("phase", "fullread"), func(ctx context.Context) {
			for range 5 {
				h.Resync()
				fulls = append(fulls, timed(func() { rep, err = h.Apply(ctx, want) }))
				if err != nil || rep.Ops != 0 || !rep.FullRead || ck.writes != before {
					b.Fatalf("full-read no-op: err %v, ops %d, full read %v, writes %d", err, rep.Ops, rep.FullRead, ck.writes-before)
				}
			}
		})
		noopFull := median(fulls)
		b.Logf("full-read no-op Applies %v", fulls)
		fullReads := rep.Reads

		// Single weight changes, spread over the state (101, for a stable median).
		runtime.GC()
		var weights []time.Duration
		pprof.Do(ctx, pprof.Labels("phase", "weight"), func(ctx context.Context) {
			for i := range 101 {
				s := &want[(i*7919)%nSvc]
				s.Destinations[i%nDst].Weight = 2 + i%2
				d := timed(func() { rep, err = h.Apply(ctx, want) })
				if err != nil || rep.Ops != 1 || len(rep.Failed) > 0 {
					b.Fatalf("weight change %d: err %v, ops %d, failed %v", i, err, rep.Ops, rep.Failed)
				}
				weights = append(weights, d)
			}
		})
		slices.Sort(weights)

		// The netlink part of a weight change alone: the re-read of the
		// service's destinations and the one write, as Apply issues them.
		var nl []time.Duration
		for i := range 21 {
			s := want[(i*7919+1)%nSvc]
			d := s.Destinations[0]
			d.Weight = 7 + i%2
			nl = append(nl, timed(func() {
				if _, err := h.k.GetDestinations(kernelKey(s.Key)); err != nil {
					b.Fatal(err)
				}
				if err := h.k.UpdateDestination(kernelKey(s.Key), kernelDest(d)); err != nil {
					b.Fatal(err)
				}
			}))
		}
		slices.Sort(nl)

		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		b.ReportMetric(float64(nSvc), "services")
		b.ReportMetric(float64(nSvc*nDst), "destinations")
		b.ReportMetric(ms(cold), "cold_apply_ms")
		b.ReportMetric(ms(restore), "ipvsadm_restore_ms")
		b.ReportMetric(ratio, "ratio_cold/restore")
		b.ReportMetric(float64(rounds), "rounds")
		b.ReportMetric(ms(adopt), "adopt_restored_ms")
		b.ReportMetric(float64(adoptReads), "adopt_read_requests")
		b.ReportMetric(ms(noopIncr), "noop_apply_median_ms")
		b.ReportMetric(ms(noopFull), "noop_full_read_ms")
		b.ReportMetric(float64(fullReads), "full_read_requests")
		b.ReportMetric(noopFull.Seconds()/cold.Seconds()*100, "noop_full_read_%cold")
		b.ReportMetric(ms(weights[len(weights)/2]), "weight_change_median_ms")
		b.ReportMetric(ms(weights[len(weights)-1]), "weight_change_max_ms")
		b.ReportMetric(ms(nl[len(nl)/2]), "weight_change_netlink_median_ms")
		b.Logf("%d services x %d destinations: cold %s (%d writes), ipvsadm-restore %s, adopt %s, no-op %s, no-op with full read %s (%d reads), weight change median %s max %s (netlink part median %s)",
			nSvc, nDst, cold, wantOps, restore, adopt, noopIncr, noopFull, fullReads, weights[len(weights)/2], weights[len(weights)-1], nl[len(nl)/2])
	}
}
