package announcer

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/internal/progress"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/routing"
	"github.com/anycast-director/director/statedir"
)

// world is the shared fake kernel and routers of a loop test. Every fake
// checks the safety invariants and fails the test on an impossible or unsafe
// operation rather than merely recording calls.
type world struct {
	t   testing.TB
	mu  sync.Mutex
	log []string // operation log, for ordering assertions

	// health
	snap    health.Snapshot
	targets []health.Target
	changes chan struct{}

	// IPVS (kernel state)
	services map[ipvs.Key]ipvs.Service
	owned    map[ipvs.Key]bool // keys the data plane may write: applied before, or Own
	stateDir string            // when set, Apply checks that new services are recorded there first
	failKeys map[ipvs.Key]error
	applyErr error
	block    chan struct{} // when set, Apply waits on it
	// steps, when set, keeps Apply going until it is closed: every value
	// received is one step done, reported as progress (a long pass that
	// moves, like the first of 10,000 destinations under emulation).
	steps     chan struct{}
	applyRuns int
	// applyCalls counts every Apply, also those cut short by the pass's
	// context.
	applyCalls int
	// writes counts the writes a real kernel would get: ipvs.Diff's
	// operations against kernel, which models it (no connections, so a
	// draining destination is deleted at once).
	writes int
	kernel []ipvs.Service
	// applyDelay makes every Apply take this long (a slow pass), statsDelay
	// every counter read.
	applyDelay, statsDelay time.Duration
	// settings are the Settings calls; settingsErr is what they return.
	settings    []ipvs.Settings
	settingsErr error
	resyncs     int

	// local VIPs
	bound   map[netip.Addr]bool
	bindErr error

	// routes
	ads    map[netip.Prefix]routing.Advertisement
	allow  map[netip.Addr]bool // configured VIPs
	setErr error
	sets   int
}

func newWorld(t testing.TB, vips ...string) *world {
	w := &world{t: t, snap: health.Snapshot{}, changes: make(chan struct{}, 1),
		services: map[ipvs.Key]ipvs.Service{}, owned: map[ipvs.Key]bool{}, failKeys: map[ipvs.Key]error{},
		bound: map[netip.Addr]bool{}, ads: map[netip.Prefix]routing.Advertisement{}, allow: map[netip.Addr]bool{}}
	for _, v := range vips {
		w.allow[netip.MustParseAddr(v)] = true
	}
	return w
}

func (w *world) deps() Deps {
	return Deps{Health: fakeHealth{w}, IPVS: fakeIPVS{w}, VIPs: fakeBinder{w}, Routes: fakeRoutes{w}}
}

// setHealth replaces the health snapshot and signals a change.
func (w *world) setHealth(s health.Snapshot) {
	w.mu.Lock()
	w.snap = s
	w.mu.Unlock()
	select {
	case w.changes <- struct{}{}:
	default:
	}
}

func (w *world) advertised() []string {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []string
	for p, ad := range w.ads {
		s := p.Addr().String()
		if ad.GracefulShutdown {
			s += " gshut"
		}
		out = append(out, s)
	}
	sortStrings(out)
	return out
}

// servable reports whether IPVS state can serve a VIP: every IPVS service on
// it has a destination with weight > 0. Caller holds mu.
func (w *world) servable(vip netip.Addr, services map[ipvs.Key]ipvs.Service) bool {
	for k, s := range services {
		if k.VIP != vip {
			continue
		}
		ok := false
		for _, d := range s.Destinations {
			if d.Weight > 0 {
				ok = true
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

type fakeHealth struct{ w *world }

func (f fakeHealth) Update(ts []health.Target) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.targets = ts
	f.w.log = append(f.w.log, fmt.Sprintf("health.Update %d", len(ts)))
}

func (f fakeHealth) Snapshot() health.Snapshot {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	return f.w.snap
}

func (f fakeHealth) Changes() <-chan struct{} { return f.w.changes }

type fakeIPVS struct{ w *world }

func (f fakeIPVS) Apply(ctx context.Context, want []ipvs.Service) (ApplyResult, error) {
	w := f.w
	w.mu.Lock()
	w.applyCalls++
	block, delay, steps := w.block, w.applyDelay, w.steps
	w.mu.Unlock()
	time.Sleep(delay)
	for steps != nil {
		select {
		case _, more := <-steps:
			if !more {
				steps = nil
				continue
			}
			progress.Report(ctx)
		case <-ctx.Done():
			return ApplyResult{}, ctx.Err()
		}
	}
	if block != nil {
		select {
		case <-block:
		case <-ctx.Done():
			return ApplyResult{}, ctx.Err()
		}
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.applyRuns++
	if w.applyErr != nil {
		w.log = append(w.log, "ipvs.Apply error")
		return ApplyResult{}, w.applyErr
	}
	fps := map[ipvs.Key]string{}
	res := ApplyResult{Failed: map[ipvs.Key]error{}, Fingerprint: func(k ipvs.Key) string { return fps[k] }}
	next := map[ipvs.Key]ipvs.Service{}
	// Like dataplane.Apply, services the data plane does not own (someone
	// else's) stay as they are.
	for k, s := range w.services {
		if !w.owned[k] {
			next[k] = s
		}
	}
	w.checkRecorded(want)
	for _, s := range want {
		if _, dup := next[s.Key]; dup && !w.owned[s.Key] {
			w.owned[s.Key] = true // adopted
			delete(next, s.Key)
		}
		if _, dup := next[s.Key]; dup {
			w.t.Errorf("impossible: service %s appears twice in one Apply", s.Key)
		}
		seen := map[netip.AddrPort]bool{}
		for _, d := range s.Destinations {
			ap := netip.AddrPortFrom(d.Address, d.Port)
			if seen[ap] {
				w.t.Errorf("impossible: destination %s twice in %s", ap, s.Key)
			}
			seen[ap] = true
			if d.Draining && d.Weight != 0 {
				w.t.Errorf("unsafe: draining destination %s of %s has weight %d", ap, s.Key, d.Weight)
			}
			if d.Weight < 0 || d.Weight > 65535 {
				w.t.Errorf("impossible: weight %d for %s", d.Weight, ap)
			}
		}
		if err, bad := w.failKeys[s.Key]; bad {
			res.Failed[s.Key] = err
			if old, ok := w.services[s.Key]; ok {
				next[s.Key] = old
			}
			continue
		}
		next[s.Key] = s
		fps[s.Key] = fmt.Sprintf("fp-%d", len(s.Destinations))
	}
	// Safety: programming must never leave an advertised VIP unservable; the
	// loop withdraws first.
	for p := range w.ads {
		if !w.servable(p.Addr(), next) {
			w.t.Errorf("unsafe: IPVS programmed without a usable destination for %s while it is advertised", p.Addr())
		}
	}
	w.countWrites(want)
	for k := range w.owned {
		if _, ok := next[k]; !ok {
			delete(w.owned, k)
		}
	}
	for _, s := range want {
		if _, ok := next[s.Key]; ok {
			w.owned[s.Key] = true
		}
	}
	w.services = next
	w.log = append(w.log, fmt.Sprintf("ipvs.Apply %d", len(want)))
	return res, nil
}

// countWrites adds the writes that programming want into the modelled
// kernel takes, and updates the model: what Diff keeps, in canonical order.
func (w *world) countWrites(want []ipvs.Service) {
	w.writes += len(ipvs.Diff(want, w.kernel, time.Now()))
	next := make([]ipvs.Service, 0, len(want))
	for _, s := range want {
		s.Destinations = slices.DeleteFunc(slices.Clone(s.Destinations), func(d ipvs.Destination) bool { return d.Draining })
		next = append(next, s)
	}
	w.kernel = next
}

// Own takes over services a previous process created (announcer.Owner).
func (f fakeIPVS) Own(keys []ipvs.Key) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	for _, k := range keys {
		f.w.owned[k] = true
	}
}

// checkRecorded fails the test when Apply is about to create a service the
// state directory does not list as owned: a crash right after would leave
// it behind. Caller holds mu.
func (w *world) checkRecorded(want []ipvs.Service) {
	if w.stateDir == "" {
		return
	}
	f, err := statedir.NewStore(w.stateDir).Read()
	if err != nil {
		w.t.Errorf("the state file cannot be read: %v", err)
	}
	recorded := map[ipvs.Key]bool{}
	if f != nil {
		for _, s := range f.Owned.IPVS {
			recorded[ipvs.Key{VIP: s.VIP, Port: s.Port, Protocol: s.Protocol}] = true
		}
	}
	for _, s := range want {
		if _, exists := w.services[s.Key]; !exists && !recorded[s.Key] {
			w.t.Errorf("unsafe: IPVS service %s created before the state directory recorded it", s.Key)
		}
	}
}

func (f fakeIPVS) Stats(context.Context) (map[ipvs.Key]Counters, error) {
	f.w.mu.Lock()
	delay := f.w.statsDelay
	f.w.mu.Unlock()
	time.Sleep(delay)
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	out := map[ipvs.Key]Counters{}
	for k := range f.w.services {
		out[k] = Counters{Service: ipvs.Stats{Connections: 7}}
	}
	return out, nil
}

func (f fakeIPVS) Settings(_ context.Context, want ipvs.Settings) (ipvs.SettingsReport, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.settings = append(f.w.settings, want)
	return ipvs.SettingsReport{Sysctls: map[string]int{"sloppy_tcp": 1}, Sync: ipvs.SyncStatus{Configured: want.Sync != nil}}, f.w.settingsErr
}

func (f fakeIPVS) Resync() {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	f.w.resyncs++
	f.w.log = append(f.w.log, "ipvs.Resync")
}

func (f fakeIPVS) Current(_ context.Context, keys []ipvs.Key) ([]ipvs.Service, error) {
	f.w.mu.Lock()
	defer f.w.mu.Unlock()
	var out []ipvs.Service
	for _, k := range keys {
		if s, ok := f.w.services[k]; ok {
			out = append(out, s)
		}
	}
	return out, nil
}

type fakeBinder struct{ w *world }

func (f fakeBinder) Set(_ context.Context, vips []netip.Addr) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.bindErr != nil {
		return w.bindErr
	}
	w.bound = map[netip.Addr]bool{}
	for _, v := range vips {
		if w.bound[v] {
			w.t.Errorf("impossible: VIP %s bound twice", v)
		}
		w.bound[v] = true
	}
	w.log = append(w.log, fmt.Sprintf("vips.Set %d", len(vips)))
	return nil
}

type fakeRoutes struct{ w *world }

func (f fakeRoutes) Set(_ context.Context, ads []routing.Advertisement) error {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	w.sets++
	if w.setErr != nil {
		return w.setErr
	}
	next := map[netip.Prefix]routing.Advertisement{}
	for _, ad := range ads {
		if _, dup := next[ad.Prefix]; dup {
			w.t.Errorf("impossible: %s advertised twice in one set", ad.Prefix)
		}
		if !w.allow[ad.Prefix.Addr()] {
			w.t.Errorf("unsafe: %s is not a configured VIP", ad.Prefix)
		}
		if !ad.Prefix.IsSingleIP() {
			w.t.Errorf("unsafe: %s is not a host route", ad.Prefix)
		}
		if !w.bound[ad.Prefix.Addr()] {
			w.t.Errorf("unsafe: %s advertised but not bound locally", ad.Prefix)
		}
		if !w.servable(ad.Prefix.Addr(), w.services) {
			w.t.Errorf("unsafe: %s advertised but IPVS cannot serve it", ad.Prefix)
		}
		next[ad.Prefix] = ad
	}
	var added, removed []string
	for p := range next {
		if _, ok := w.ads[p]; !ok {
			added = append(added, p.Addr().String())
		}
	}
	for p := range w.ads {
		if _, ok := next[p]; !ok {
			removed = append(removed, p.Addr().String())
		}
	}
	sortStrings(added)
	sortStrings(removed)
	w.ads = next
	w.log = append(w.log, fmt.Sprintf("routes.Set +%v -%v", added, removed))
	return nil
}

func (f fakeRoutes) Advertised(context.Context) ([]routing.Advertisement, error) {
	w := f.w
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make([]routing.Advertisement, 0, len(w.ads))
	for _, ad := range w.ads {
		out = append(out, ad)
	}
	slices.SortFunc(out, func(a, b routing.Advertisement) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	return out, nil
}

func (f fakeRoutes) Peers() []routing.PeerStatus {
	return []routing.PeerStatus{{Address: netip.MustParseAddr("10.0.1.1"), ASN: 65000, State: "established"}}
}

var errInjected = errors.New("injected failure")

// weights renders the kernel destinations of vip's port-80 service.
func (w *world) weights(vip string) string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return destWeights(w.services[testKey(vip)])
}
