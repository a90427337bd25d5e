// Package controltest runs a real announcer loop on small stateful fakes of
// its adapters behind a real control server on a Unix socket, for the tests
// of the control API, directorctl and the benchmarks. It is a test helper,
// like net/http/httptest: nothing in the daemon imports it.
package controltest

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/routing"
)

// World is a small stateful stand-in for the kernel, the health scheduler
// and the routers behind a real announcer.Loop. It fails the test on
// operations that cannot happen (duplicates, draining destinations with a
// weight, advertising a VIP that is not bound).
type World struct {
	t  testing.TB
	mu sync.Mutex

	down    map[netip.AddrPort]bool // targets the fake health reports down
	targets []health.Target
	changes chan struct{}

	services map[ipvs.Key]ipvs.Service
	conns    map[ipvs.Key]uint64 // per service, grows on every Stats read
	bound    map[netip.Addr]bool
	ads      map[netip.Prefix]routing.Advertisement
	peers    []routing.PeerStatus
	delay    time.Duration // each Apply takes this long (a slow kernel)
}

// SetApplyDelay makes every IPVS Apply take d, like a busy kernel, so tests
// can tell whether callers wait for the pass.
func (w *World) SetApplyDelay(d time.Duration) {
	w.mu.Lock()
	w.delay = d
	w.mu.Unlock()
}

// NewWorld builds an empty world whose health reports every target up.
func NewWorld(t testing.TB) *World {
	return &World{t: t, down: map[netip.AddrPort]bool{}, changes: make(chan struct{}, 1),
		services: map[ipvs.Key]ipvs.Service{}, conns: map[ipvs.Key]uint64{},
		bound: map[netip.Addr]bool{}, ads: map[netip.Prefix]routing.Advertisement{},
		peers: []routing.PeerStatus{{Address: netip.MustParseAddr("192.0.2.1"), ASN: 65000, State: "established",
			BFDState: "up", Flaps: 2, Advertised: 1}}}
}

// Deps are the fakes as the announcer loop's adapters.
func (w *World) Deps() announcer.Deps {
	return announcer.Deps{Health: fakeHealth{w}, IPVS: fakeIPVS{w}, VIPs: fakeBinder{w}, Routes: fakeRoutes{w}}
}

// SetDown marks a backend down (or up again) and wakes the loop.
func (w *World) SetDown(ap netip.AddrPort, down bool) {
	w.mu.Lock()
	w.down[ap] = down
	w.mu.Unlock()
	select {
	case w.changes <- struct{}{}:
	default:
	}
}

// Weight returns the kernel weight of a destination (-1 when absent).
func (w *World) Weight(key ipvs.Key, dest netip.AddrPort) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, d := range w.services[key].Destinations {
		if netip.AddrPortFrom(d.Address, d.Port) == dest {
			return d.Weight
		}
	}
	return -1
}

// Advertised reports whether vip is announced.
func (w *World) Advertised(vip netip.Addr) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	_, ok := w.ads[netip.PrefixFrom(vip, vip.BitLen())]
	return ok
}

type fakeHealth struct{ w *World }

func (f fakeHealth) Update(ts []health.Target) {
	f.w.mu.Lock()
	f.w.targets = ts
	f.w.mu.Unlock()
}

// Snapshot reports every target up unless marked down: a verdict exists for
// each, so the learn period ends at once.
func (f fakeHealth) Snapshot() health.Snapshot {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	snap := health.Snapshot{}
	for _, t := range f.w.targets {
		ap := netip.AddrPortFrom(t.Addr, t.Port)
		r := health.Result{State: health.Up, Reason: "2/2 probes passed", Probes: 3, Latency: 1500000}
		if f.w.down[ap] {
			r = health.Result{State: health.Down, Reason: "connect: connection refused",
				LastError: "connect: connection refused", Probes: 3}
		}
		snap[t.Key()] = r
	}
	return snap
}

func (f fakeHealth) Changes() <-chan struct{} { return f.w.changes }

type fakeIPVS struct{ w *World }

func (f fakeIPVS) Apply(_ context.Context, want []ipvs.Service) (announcer.ApplyResult, error) {
	w := f.w
	w.mu.Lock()
	delay := w.delay
	w.mu.Unlock()
	time.Sleep(delay)
	w.mu.Lock()
	defer w.mu.Unlock()
	fps := map[ipvs.Key]string{}
	res := announcer.ApplyResult{Failed: map[ipvs.Key]error{}, Fingerprint: func(k ipvs.Key) string { return fps[k] }}
	next := map[ipvs.Key]ipvs.Service{}
	for _, s := range want {
		if _, dup := next[s.Key]; dup {
			w.t.Errorf("impossible: service %s twice in one Apply", s.Key)
		}
		seen := map[netip.AddrPort]bool{}
		for _, d := range s.Destinations {
			ap := netip.AddrPortFrom(d.Address, d.Port)
			if seen[ap] {
				w.t.Errorf("impossible: destination %s twice in %s", ap, s.Key)
			}
			seen[ap] = true
			if d.Draining && d.Weight != 0 {
				w.t.Errorf("unsafe: draining destination %s has weight %d", ap, d.Weight)
			}
		}
		next[s.Key] = s
		fps[s.Key] = ipvs.Fingerprint(s)
	}
	w.services = next
	return res, nil
}

// Stats returns counters that grow with every read, like a kernel under load.
func (f fakeIPVS) Stats(context.Context) (map[ipvs.Key]announcer.Counters, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	out := map[ipvs.Key]announcer.Counters{}
	for k, s := range w.services {
		w.conns[k] += 10
		c := announcer.Counters{Service: ipvs.Stats{Connections: w.conns[k], PacketsIn: 3 * w.conns[k],
			PacketsOut: 2 * w.conns[k], BytesIn: 300 * w.conns[k], BytesOut: 900 * w.conns[k]},
			Dests: map[netip.AddrPort]ipvs.Stats{}}
		for _, d := range s.Destinations {
			c.Dests[netip.AddrPortFrom(d.Address, d.Port)] = ipvs.Stats{ActiveConns: d.Weight,
				Connections: w.conns[k] / 2, PacketsIn: w.conns[k], BytesIn: 100 * w.conns[k]}
		}
		out[k] = c
	}
	return out, nil
}

// Settings reports the sysctls as set and, with sync configured, both
// daemons running as configured.
func (f fakeIPVS) Settings(_ context.Context, want ipvs.Settings) (ipvs.SettingsReport, error) {
	rep := ipvs.SettingsReport{Sysctls: map[string]int{"sloppy_tcp": 1, "expire_nodest_conn": 1}}
	if want.Sync != nil {
		rep.Sync.Configured = true
		for _, d := range want.Sync.Daemons() {
			rep.Sync.Daemons = append(rep.Sync.Daemons, d.Normalized(1500))
		}
	}
	return rep, nil
}

// Resync does nothing: the fake kernel changes only through Apply.
func (fakeIPVS) Resync() {}

// Current returns what the fake kernel holds for keys.
func (f fakeIPVS) Current(_ context.Context, keys []ipvs.Key) ([]ipvs.Service, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []ipvs.Service
	for _, k := range keys {
		if s, ok := w.services[k]; ok {
			out = append(out, s)
		}
	}
	return out, nil
}

type fakeBinder struct{ w *World }

func (f fakeBinder) Set(_ context.Context, vips []netip.Addr) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	next := map[netip.Addr]bool{}
	for _, v := range vips {
		if next[v] {
			w.t.Errorf("impossible: VIP %s bound twice", v)
		}
		next[v] = true
	}
	w.bound = next
	return nil
}

type fakeRoutes struct{ w *World }

func (f fakeRoutes) Set(_ context.Context, ads []routing.Advertisement) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	next := map[netip.Prefix]routing.Advertisement{}
	for _, ad := range ads {
		if _, dup := next[ad.Prefix]; dup {
			w.t.Errorf("impossible: %s advertised twice", ad.Prefix)
		}
		if !w.bound[ad.Prefix.Addr()] {
			w.t.Errorf("unsafe: %s advertised but not bound", ad.Prefix)
		}
		next[ad.Prefix] = ad
	}
	w.ads = next
	return nil
}

func (f fakeRoutes) Advertised(context.Context) ([]routing.Advertisement, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	out := make([]routing.Advertisement, 0, len(f.w.ads))
	for _, ad := range f.w.ads {
		out = append(out, ad)
	}
	slices.SortFunc(out, func(a, b routing.Advertisement) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out, nil
}

func (f fakeRoutes) Peers() []routing.PeerStatus {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return append([]routing.PeerStatus(nil), f.w.peers...)
}

// String helps failure messages.
func (w *World) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return fmt.Sprintf("services=%v ads=%d", w.services, len(w.ads))
}
