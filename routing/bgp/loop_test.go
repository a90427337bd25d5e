package bgp

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
)

// TestLoopWedgedWithdrawsAndReannouncesOverBGP runs the announcer loop with
// the real speaker against the in-process router and wedges the loop inside
// an IPVS Apply: the router loses the VIP within max_failed_resyncs x
// resync_interval, status says so once the stuck pass completes, and the VIP
// comes back at the router after it.
func TestLoopWedgedWithdrawsAndReannouncesOverBGP(t *testing.T) {
	r := newTestRouter(t, "127.0.30.1")
	r.addSpeaker(t, "127.0.30.2")
	s, _ := startSpeaker(t, speakerConfig("127.0.30.2", r), []*testRouter{r}, "198.18.0.10/32")
	waitEstablished(t, s)

	cfg := loopConfig()
	plane := &blockingPlane{}
	loop := announcer.New(cfg, announcer.Deps{Health: upHealth{cfg}, IPVS: plane, VIPs: noBinder{}, Routes: s},
		testLogger(t, "loop"), announcer.Options{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- loop.Run(ctx) }()
	defer func() {
		plane.unblock()
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()
	vip := netip.MustParsePrefix("198.18.0.10/32")
	atRouter := func(want bool) func() string {
		return func() string {
			got, err := r.routes("127.0.30.2")
			if err != nil {
				return err.Error()
			}
			if _, ok := got[vip]; ok != want {
				return fmt.Sprintf("router has %v", slices.Collect(maps.Keys(got)))
			}
			return ""
		}
	}
	waitFor(t, 10*time.Second, "the VIP at the router", atRouter(true))

	plane.block()
	loop.Poke()
	stuck := time.Now()
	limit := time.Duration(cfg.Director.MaxFailedResyncs) * cfg.Director.ResyncInterval
	waitFor(t, limit+5*time.Second, "the withdraw at the router", atRouter(false))
	if took := time.Since(stuck); took > limit+time.Second {
		t.Errorf("withdrawn %s after the loop wedged, want within the limit %s (+1 s for the router)", took, limit)
	}
	if !loop.Wedged() {
		t.Error("Wedged() = false while the loop is stuck")
	}

	plane.unblock()
	waitFor(t, 10*time.Second, "the VIP back at the router", atRouter(true))
	waitFor(t, 5*time.Second, "status advertised again", func() string {
		if v, _ := loop.Status().VIP(vip.Addr()); !v.Advertised {
			return "status: " + v.Reason
		}
		return ""
	})
}

// loopConfig is one VIP with one backend on a fast resync, so the wedge limit
// (3 x 1 s) is short.
func loopConfig() *config.Config {
	return &config.Config{
		Source: "loop.yaml",
		Director: config.Director{Name: "d1", VIPInterface: "lo", Announce: config.AnnounceBGP,
			DrainDelay: time.Second, ResyncInterval: time.Second, MaxFailedResyncs: 3,
			GracefulShutdown: time.Second, Linger: time.Second},
		API: config.API{KeepConfigs: 2},
		Services: []config.Service{{
			Name: "web", VIP: netip.MustParseAddr("198.18.0.10"), Port: 80, Protocol: config.TCP,
			Scheduler: "mh", SchedulerFlags: []string{"mh-port"}, Forwarding: config.ForwardDR, MinHealthy: 1,
			Health:   config.Check{Type: config.CheckTCP, Interval: time.Second, Timeout: time.Second / 2, Rise: 1, Fall: 1},
			Backends: []config.Backend{{Address: netip.MustParseAddr("10.0.2.21"), Port: 80, Weight: 1}},
		}},
	}
}

// upHealth reports every target of a configuration up.
type upHealth struct{ cfg *config.Config }

func (upHealth) Update([]health.Target) {}

func (h upHealth) Snapshot() health.Snapshot {
	snap := health.Snapshot{}
	for _, t := range announcer.Targets(h.cfg) {
		snap[t.Key()] = health.Result{State: health.Up, Probes: 1}
	}
	return snap
}

func (upHealth) Changes() <-chan struct{} { return nil }

// blockingPlane accepts every IPVS state, and while blocked wedges Apply
// until unblocked.
type blockingPlane struct {
	mu   sync.Mutex
	gate chan struct{}
}

func (p *blockingPlane) block() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.gate = make(chan struct{})
}

func (p *blockingPlane) unblock() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.gate != nil {
		close(p.gate)
		p.gate = nil
	}
}

func (p *blockingPlane) Apply(ctx context.Context, _ []ipvs.Service) (announcer.ApplyResult, error) {
	p.mu.Lock()
	gate := p.gate
	p.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return announcer.ApplyResult{}, ctx.Err()
		}
	}
	return announcer.ApplyResult{Failed: map[ipvs.Key]error{}}, nil
}

func (p *blockingPlane) Stats(context.Context) (map[ipvs.Key]announcer.Counters, error) {
	return nil, nil
}

func (p *blockingPlane) Settings(context.Context, ipvs.Settings) (ipvs.SettingsReport, error) {
	return ipvs.SettingsReport{}, nil
}

func (p *blockingPlane) Resync() {}

func (p *blockingPlane) Current(context.Context, []ipvs.Key) ([]ipvs.Service, error) {
	return nil, nil
}

// noBinder binds nothing: the test needs no local addresses.
type noBinder struct{}

func (noBinder) Set(context.Context, []netip.Addr) error { return nil }
