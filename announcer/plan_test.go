package announcer

import (
	"fmt"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

const (
	up   = health.Up
	down = health.Down
)

// step is one pass of a scenario; steps build on the previous step's Memory.
type step struct {
	name      string
	at        time.Duration // since t0
	cfg       *config.Config
	health    map[string]health.State
	overrides Overrides
	shutdown  bool

	// want: advertised VIPs ("198.18.0.10" or "198.18.0.10 gshut"), VIP reasons
	// (prefix match), and destinations per service key ("10.0.2.21:80 w1",
	// "10.0.2.22:80 w0 drain").
	wantAds     []string
	wantReasons map[string]string
	wantDests   map[string][]string
}

func runScenario(t *testing.T, steps []step) {
	t.Helper()
	var mem Memory
	var cfg *config.Config
	advertised := map[netip.Addr]bool{}
	for i, s := range steps {
		if s.cfg != nil {
			cfg = s.cfg
		}
		p := plan(Input{Config: cfg, Health: healthOf(cfg, s.health), Overrides: s.overrides,
			Now: t0.Add(s.at), Memory: mem, ShuttingDown: s.shutdown, Advertised: advertised})
		// The routing adapter then has what the plan allows (programming
		// succeeds here).
		mem = p.Memory
		advertised = map[netip.Addr]bool{}
		var ads []string
		for _, v := range p.VIPs {
			if v.Advertise {
				advertised[v.VIP] = true
				a := v.VIP.String()
				if v.Ad.GracefulShutdown {
					a += " gshut"
				}
				ads = append(ads, a)
			}
		}
		label := fmt.Sprintf("step %d (%s)", i, s.name)
		if diff := cmp.Diff(s.wantAds, ads); diff != "" {
			t.Errorf("%s: advertised (-want +got):\n%s", label, diff)
		}
		for vip, want := range s.wantReasons {
			got := "<missing>"
			for _, v := range p.VIPs {
				if v.VIP.String() == vip {
					got = v.Reason
				}
			}
			if !strings.HasPrefix(got, want) {
				t.Errorf("%s: reason of %s = %q, want prefix %q", label, vip, got, want)
			}
		}
		if s.wantDests != nil {
			got := map[string][]string{}
			for _, svc := range p.IPVS {
				if !ipvs.IsCanonical(svc.Destinations) {
					t.Errorf("%s: destinations of %s not in canonical order", label, svc.Key)
				}
				var ds []string
				for _, d := range svc.Destinations {
					e := fmt.Sprintf("%s w%d", netip.AddrPortFrom(d.Address, d.Port), d.Weight)
					if d.Draining {
						e += " drain"
					}
					if d.DrainExpired(t0.Add(s.at)) {
						e += " over"
					}
					ds = append(ds, e)
				}
				sort.Strings(ds) // address order, for reading
				got[svc.Key.String()] = ds
			}
			if diff := cmp.Diff(s.wantDests, got); diff != "" {
				t.Errorf("%s: IPVS destinations (-want +got):\n%s", label, diff)
			}
		}
	}
}

// TestPlanQuiescesFailingBackends: with mh-fallback (and any scheduler
// that skips a weight-0 destination), a failing backend stays in IPVS at
// weight 0 for as long as it fails, and recovering is one weight change:
// deleting and re-adding it would rewrite the order of every destination
// after it. Without the fallback flag (TestPlanLearnHoldDownWithdraw) it
// drains and is deleted, as flows hashing to it would get resets.
func TestPlanQuiescesFailingBackends(t *testing.T) {
	svc := webService("web", "198.18.0.10", 1, "10.0.2.21", "10.0.2.22")
	svc.SchedulerFlags = []string{"mh-port", "mh-fallback"}
	cfg := testConfig(svc)
	key := "tcp/198.18.0.10:80"
	both := map[string]health.State{"10.0.2.21": up, "10.0.2.22": up}
	oneDown := map[string]health.State{"10.0.2.21": up, "10.0.2.22": down}
	runScenario(t, []step{
		{name: "learned", cfg: cfg, health: both, wantDests: map[string][]string{key: {"10.0.2.21:80 w1", "10.0.2.22:80 w1"}}},
		{name: "one down: weight 0, not draining", at: time.Second, health: oneDown,
			wantDests: map[string][]string{key: {"10.0.2.21:80 w1", "10.0.2.22:80 w0"}}},
		{name: "far past the drain delay: still there", at: time.Hour, health: oneDown, wantAds: []string{"198.18.0.10"},
			wantDests: map[string][]string{key: {"10.0.2.21:80 w1", "10.0.2.22:80 w0"}}},
		{name: "recovered: its weight back", at: time.Hour + time.Second, health: both, wantAds: []string{"198.18.0.10"},
			wantDests: map[string][]string{key: {"10.0.2.21:80 w1", "10.0.2.22:80 w1"}}},
	})
}

func TestPlanLearnHoldDownWithdraw(t *testing.T) {
	cfg := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21", "10.0.2.22"))
	key := "tcp/198.18.0.10:80"
	runScenario(t, []step{
		// A new service enters IPVS with its backends once each has a
		// first verdict (TestPlanHoldsNewBackends).
		{name: "nothing checked yet: not in IPVS", cfg: cfg,
			wantReasons: map[string]string{"198.18.0.10": "learning"},
			wantDests:   map[string][]string{}},
		{name: "one verdict, still learning: held for the other", at: time.Second, health: map[string]health.State{"10.0.2.21": up},
			wantReasons: map[string]string{"198.18.0.10": "learning"},
			wantDests:   map[string][]string{}},
		{name: "learned, hold-down starts", at: 2 * time.Second,
			health:      map[string]health.State{"10.0.2.21": up, "10.0.2.22": up},
			wantReasons: map[string]string{"198.18.0.10": "hold-down 2/2"},
			wantDests:   map[string][]string{key: {"10.0.2.21:80 w1", "10.0.2.22:80 w1"}}},
		{name: "hold-down not over", at: 3900 * time.Millisecond,
			health:      map[string]health.State{"10.0.2.21": up, "10.0.2.22": up},
			wantReasons: map[string]string{"198.18.0.10": "hold-down"}},
		{name: "hold-down over", at: 4 * time.Second,
			health:  map[string]health.State{"10.0.2.21": up, "10.0.2.22": up},
			wantAds: []string{"198.18.0.10"}, wantReasons: map[string]string{"198.18.0.10": "healthy 2/2"},
			wantDests: map[string][]string{key: {"10.0.2.21:80 w1", "10.0.2.22:80 w1"}}},
		{name: "one down: drains, VIP stays", at: 5 * time.Second,
			health:  map[string]health.State{"10.0.2.21": up, "10.0.2.22": down},
			wantAds: []string{"198.18.0.10"}, wantReasons: map[string]string{"198.18.0.10": "healthy 1/2"},
			wantDests: map[string][]string{key: {"10.0.2.21:80 w1", "10.0.2.22:80 w0 drain"}}},
		{name: "both down: withdrawn at once", at: 5100 * time.Millisecond,
			health:      map[string]health.State{"10.0.2.21": down, "10.0.2.22": down},
			wantReasons: map[string]string{"198.18.0.10": "below min_healthy 0/2"},
			wantDests:   map[string][]string{key: {"10.0.2.21:80 w0 drain", "10.0.2.22:80 w0 drain"}}},
		{name: "drain delay over for the first one", at: 15 * time.Second,
			health:    map[string]health.State{"10.0.2.21": down, "10.0.2.22": down},
			wantDests: map[string][]string{key: {"10.0.2.21:80 w0 drain", "10.0.2.22:80 w0 drain over"}}},
		{name: "recovered: hold-down again", at: 16 * time.Second,
			health:      map[string]health.State{"10.0.2.21": up, "10.0.2.22": up},
			wantReasons: map[string]string{"198.18.0.10": "hold-down"},
			wantDests:   map[string][]string{key: {"10.0.2.21:80 w1", "10.0.2.22:80 w1"}}},
		{name: "advertised after hold-down", at: 18 * time.Second,
			health:  map[string]health.State{"10.0.2.21": up, "10.0.2.22": up},
			wantAds: []string{"198.18.0.10"}},
	})
}

func TestPlanMinHealthy(t *testing.T) {
	cfg := testConfig(webService("web", "198.18.0.10", 2, "10.0.2.21", "10.0.2.22", "10.0.2.23"))
	cfg.Director.HoldDown = 0
	all := map[string]health.State{"10.0.2.21": up, "10.0.2.22": up, "10.0.2.23": up}
	runScenario(t, []step{
		{name: "3/3", cfg: cfg, health: all, wantAds: []string{"198.18.0.10"},
			wantReasons: map[string]string{"198.18.0.10": "healthy 3/3"}},
		{name: "2/3 still enough", at: time.Second,
			health:  map[string]health.State{"10.0.2.21": up, "10.0.2.22": up, "10.0.2.23": down},
			wantAds: []string{"198.18.0.10"}, wantReasons: map[string]string{"198.18.0.10": "healthy 2/3"}},
		{name: "1/3 below", at: 2 * time.Second,
			health:      map[string]health.State{"10.0.2.21": up, "10.0.2.22": down, "10.0.2.23": down},
			wantReasons: map[string]string{"198.18.0.10": "below min_healthy 1/3"}},
	})
}

func TestPlanOverrides(t *testing.T) {
	cfg := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21", "10.0.2.22"))
	cfg.Director.HoldDown = 0
	key := "tcp/198.18.0.10:80"
	all := map[string]health.State{"10.0.2.21": up, "10.0.2.22": up}
	vip := netip.MustParseAddr("198.18.0.10")
	b1 := netip.MustParseAddr("10.0.2.21")
	drained := Overrides{Drained: map[BackendRef]Note{{Addr: b1}: {Reason: "kernel update"}}}
	weighted := Overrides{Weights: map[BackendRef]WeightNote{{Service: "web", Addr: b1, Port: 80}: {Weight: 5}}}
	disabled := Overrides{DisabledVIPs: map[netip.Addr]Note{vip: {Reason: "maintenance"}}}
	expiring := Overrides{DisabledVIPs: map[netip.Addr]Note{vip: {Expires: t0.Add(30 * time.Second)}}}
	director := Overrides{Director: &Note{Reason: "rack move"}}
	runScenario(t, []step{
		{name: "baseline", cfg: cfg, health: all, wantAds: []string{"198.18.0.10"}},
		{name: "drain a host everywhere", at: time.Second, health: all, overrides: drained,
			wantAds:   []string{"198.18.0.10"},
			wantDests: map[string][]string{key: {"10.0.2.21:80 w0 drain", "10.0.2.22:80 w1"}}},
		{name: "weight override", at: 2 * time.Second, health: all, overrides: weighted,
			wantAds:   []string{"198.18.0.10"},
			wantDests: map[string][]string{key: {"10.0.2.21:80 w5", "10.0.2.22:80 w1"}}},
		{name: "disable VIP: graceful first", at: 3 * time.Second, health: all, overrides: disabled,
			wantAds:     []string{"198.18.0.10 gshut"},
			wantReasons: map[string]string{"198.18.0.10": "disabled by operator: maintenance (graceful"}},
		{name: "graceful period over: withdrawn", at: 6 * time.Second, health: all, overrides: disabled,
			wantReasons: map[string]string{"198.18.0.10": "disabled by operator"}},
		{name: "enabled again", at: 7 * time.Second, health: all, wantAds: []string{"198.18.0.10"}},
		{name: "director drain", at: 8 * time.Second, health: all, overrides: director,
			wantAds: []string{"198.18.0.10 gshut"},
			// IPVS keeps forwarding while drained.
			wantDests: map[string][]string{key: {"10.0.2.21:80 w1", "10.0.2.22:80 w1"}}},
		{name: "director drained: withdrawn", at: 11 * time.Second, health: all, overrides: director,
			wantReasons: map[string]string{"198.18.0.10": "director drained by operator: rack move"}},
		{name: "undrained", at: 12 * time.Second, health: all, wantAds: []string{"198.18.0.10"}},
		{name: "override with expiry applies", at: 13 * time.Second, health: all, overrides: expiring,
			wantAds: []string{"198.18.0.10 gshut"}},
		{name: "override expired", at: 31 * time.Second, health: all, overrides: expiring,
			wantAds: []string{"198.18.0.10"}},
	})
}

func TestPlanShutdownIsGraceful(t *testing.T) {
	cfg := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21"))
	cfg.Director.HoldDown = 0
	all := map[string]health.State{"10.0.2.21": up}
	runScenario(t, []step{
		{name: "up", cfg: cfg, health: all, wantAds: []string{"198.18.0.10"}},
		{name: "shutdown: gshut", at: time.Second, health: all, shutdown: true,
			wantAds: []string{"198.18.0.10 gshut"}, wantReasons: map[string]string{"198.18.0.10": "shutting down"}},
		{name: "shutdown: withdrawn", at: 4 * time.Second, health: all, shutdown: true},
	})
}

func TestPlanHealthWithdrawBeatsGraceful(t *testing.T) {
	cfg := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21"))
	cfg.Director.HoldDown = 0
	runScenario(t, []step{
		{name: "up", cfg: cfg, health: map[string]health.State{"10.0.2.21": up}, wantAds: []string{"198.18.0.10"}},
		{name: "shutdown while unhealthy: no graceful period", at: time.Second, shutdown: true,
			health: map[string]health.State{"10.0.2.21": down}},
	})
}

func TestPlanRemovedBackendAndServiceDrain(t *testing.T) {
	cfg1 := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21", "10.0.2.22"),
		webService("api", "198.18.0.11", 1, "10.0.2.31"))
	cfg1.Director.HoldDown = 0
	cfg2 := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21"))
	cfg2.Director.HoldDown = 0
	all := map[string]health.State{"10.0.2.21": up, "10.0.2.22": up, "10.0.2.31": up}
	runScenario(t, []step{
		{name: "two services", cfg: cfg1, health: all, wantAds: []string{"198.18.0.10", "198.18.0.11"}},
		{name: "reload drops a backend and a service", at: time.Second, cfg: cfg2, health: all,
			wantAds: []string{"198.18.0.10"},
			wantDests: map[string][]string{
				"tcp/198.18.0.10:80": {"10.0.2.21:80 w1", "10.0.2.22:80 w0 drain"},
				"tcp/198.18.0.11:80": {"10.0.2.31:80 w0 drain"},
			}},
		{name: "still draining", at: 10 * time.Second, health: all,
			wantAds: []string{"198.18.0.10"},
			wantDests: map[string][]string{
				"tcp/198.18.0.10:80": {"10.0.2.21:80 w1", "10.0.2.22:80 w0 drain"},
				"tcp/198.18.0.11:80": {"10.0.2.31:80 w0 drain"},
			}},
		{name: "drain delay over: deleted", at: 11 * time.Second, health: all,
			wantAds:   []string{"198.18.0.10"},
			wantDests: map[string][]string{"tcp/198.18.0.10:80": {"10.0.2.21:80 w1"}}},
	})
}

func TestPlanSharedVIPNeedsEveryService(t *testing.T) {
	web := webService("web", "198.18.0.10", 1, "10.0.2.21")
	tls := webService("tls", "198.18.0.10", 1, "10.0.2.22")
	tls.Port = 443
	tls.Backends[0].Port = 443
	cfg := testConfig(web, tls)
	cfg.Director.HoldDown = 0
	runScenario(t, []step{
		{name: "both up", cfg: cfg, health: map[string]health.State{"10.0.2.21": up, "10.0.2.22": up},
			wantAds: []string{"198.18.0.10"}},
		{name: "one service down withdraws the VIP", at: time.Second,
			health:      map[string]health.State{"10.0.2.21": up, "10.0.2.22": down},
			wantReasons: map[string]string{"198.18.0.10": "below min_healthy 0/1 (service tls)"}},
	})
}

func TestPlanLocalService(t *testing.T) {
	svc := config.Service{Name: "dns", VIP: netip.MustParseAddr("198.18.0.53"), Port: 53, Protocol: config.UDP,
		Forwarding: config.ForwardLocal, MinHealthy: 1,
		Health: config.Check{Type: config.CheckTCP, Interval: time.Second, Timeout: time.Second / 2, Rise: 1, Fall: 1}}
	cfg := testConfig(svc)
	cfg.Director.HoldDown = 0
	p := plan(Input{Config: cfg, Now: t0, Health: healthOf(cfg, map[string]health.State{"198.18.0.53": up})})
	if len(p.IPVS) != 0 {
		t.Errorf("local service produced IPVS state: %+v", p.IPVS)
	}
	if len(p.VIPs) != 1 || !p.VIPs[0].Advertise {
		t.Fatalf("local VIP not advertised: %+v", p.VIPs)
	}
	if got := p.Services[0].Backends[0].Target; !strings.Contains(got, "198.18.0.53:53") {
		t.Errorf("implicit target = %q, want the VIP and port", got)
	}
	if diff := cmp.Diff([]netip.Addr{netip.MustParseAddr("198.18.0.53")}, p.LocalVIPs, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("local VIPs (-want +got):\n%s", diff)
	}
}

func TestPlanIsPureAndDeterministic(t *testing.T) {
	cfg := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.23", "10.0.2.21", "10.0.2.22"))
	h := healthOf(cfg, map[string]health.State{"10.0.2.21": up, "10.0.2.22": down, "10.0.2.23": up})
	mem := Memory{Learned: true, ServableSince: map[netip.Addr]time.Time{netip.MustParseAddr("198.18.0.10"): t0}}
	in := Input{Config: cfg, Health: h, Now: t0.Add(time.Minute), Memory: mem}
	a, b := plan(in), plan(in)
	addrs := cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{})
	planned := cmp.Comparer(func(x, y Planned) bool { return cmp.Equal(x.Services(), y.Services(), addrs) })
	if diff := cmp.Diff(a, b, addrs, planned); diff != "" {
		t.Errorf("two plans of the same input differ:\n%s", diff)
	}
	if len(mem.DrainingSince) != 0 || len(mem.Previous.Services()) != 0 {
		t.Errorf("plan mutated its input memory: %+v", mem)
	}
	if !ipvs.IsCanonical(a.IPVS[0].Destinations) {
		t.Errorf("destinations not in canonical order: %v", a.IPVS[0].Destinations)
	}
}

func TestPlanWake(t *testing.T) {
	cfg := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21"))
	p := plan(Input{Config: cfg, Now: t0, Health: healthOf(cfg, map[string]health.State{"10.0.2.21": up})})
	if want := t0.Add(cfg.Director.HoldDown); !p.Wake.Equal(want) {
		t.Errorf("wake = %v, want the end of the hold-down %v", p.Wake, want)
	}
}

func TestPlanLoopbackVIPIsNotBound(t *testing.T) {
	svc := config.Service{Name: "web", VIP: netip.MustParseAddr("127.0.0.10"), Port: 8080, Protocol: config.TCP,
		Forwarding: config.ForwardLocal, MinHealthy: 1,
		Health: config.Check{Type: config.CheckTCP, Interval: time.Second, Timeout: time.Second / 2, Rise: 1, Fall: 1}}
	cfg := testConfig(svc, webService("api", "198.18.0.11", 1, "10.0.2.31"))
	p := plan(Input{Config: cfg, Now: t0})
	if len(p.LocalVIPs) != 1 || p.LocalVIPs[0] != netip.MustParseAddr("198.18.0.11") {
		t.Errorf("LocalVIPs = %v, want only the non-loopback VIP", p.LocalVIPs)
	}
	if len(p.VIPs) != 2 {
		t.Errorf("VIPs = %d, want both decided", len(p.VIPs))
	}
}

func TestPlanCheckChangeKeepsLastVerdict(t *testing.T) {
	cfg1 := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21"))
	cfg1.Director.HoldDown = 0
	cfg2 := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21"))
	cfg2.Director.HoldDown = 0
	cfg2.Services[0].Health.Interval = 2 * time.Second // a new target key
	h1 := healthOf(cfg1, map[string]health.State{"10.0.2.21": up})
	p := plan(Input{Config: cfg1, Health: h1, Now: t0})
	if !p.VIPs[0].Advertise {
		t.Fatalf("setup: not advertised: %s", p.VIPs[0].Reason)
	}
	mem := p.Memory
	mem.LastHealth = p.Verdicts() // what the loop does on reload
	// The reload's new check has no verdict yet: the VIP stays up on the last one.
	p = plan(Input{Config: cfg2, Health: h1, Now: t0.Add(time.Second), Memory: mem,
		Advertised: map[netip.Addr]bool{p.VIPs[0].VIP: true}})
	if !p.VIPs[0].Advertise {
		t.Errorf("a changed check withdrew a healthy VIP: %s", p.VIPs[0].Reason)
	}
	if r := p.Services[0].Backends[0].Health.Reason; !strings.Contains(r, "last verdict") {
		t.Errorf("reason = %q, want it to say the verdict is carried over", r)
	}
	// Once the new check answers, its verdict wins.
	h2 := healthOf(cfg2, map[string]health.State{"10.0.2.21": down})
	p = plan(Input{Config: cfg2, Health: h2, Now: t0.Add(2 * time.Second), Memory: p.Memory})
	if p.VIPs[0].Advertise {
		t.Errorf("the new check's down verdict was ignored")
	}
}

func TestPlanAdoptedWeightsUntilFirstVerdict(t *testing.T) {
	cfg := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.21", "10.0.2.22", "10.0.2.23"))
	key := testKey("198.18.0.10")
	adopted := map[DestID]int{
		{Service: key, Dest: netip.MustParseAddrPort("10.0.2.21:80")}: 4,
		{Service: key, Dest: netip.MustParseAddrPort("10.0.2.22:80")}: 2,
		{Service: key, Dest: netip.MustParseAddrPort("10.0.2.23:80")}: 1,
	}
	result := func(st health.State, lastErr string) health.Result {
		return health.Result{State: st, LastError: lastErr, Probes: 1}
	}
	targets := TargetKeys(cfg)[0]
	snap := health.Snapshot{
		// .21: no verdict yet; .22: rising (passed once, rise 2); .23: failed its first probe.
		targets[1]: result(health.Down, ""),
		targets[2]: result(health.Down, "connection refused"),
	}
	p := plan(Input{Config: cfg, Health: snap, Now: t0, Memory: Memory{Adopted: adopted}})
	if got := weightsOf(p.IPVS[0]); got != "10.0.2.21:80=4 10.0.2.22:80=2 10.0.2.23:80=0" {
		t.Errorf("weights = %s, want adopted weights kept for unsettled backends and 0 for the failed one", got)
	}
	if len(p.Memory.Adopted) != 2 {
		t.Errorf("adopted entries carried = %d, want 2 (the failed backend settled)", len(p.Memory.Adopted))
	}
	if p.VIPs[0].Advertise {
		t.Errorf("advertised before any backend was verified")
	}
	// All settle: configured weights, nothing carried.
	all := healthOf(cfg, map[string]health.State{"10.0.2.21": up, "10.0.2.22": up, "10.0.2.23": up})
	p = plan(Input{Config: cfg, Health: all, Now: t0.Add(time.Second), Memory: p.Memory})
	if got := weightsOf(p.IPVS[0]); got != "10.0.2.21:80=1 10.0.2.22:80=1 10.0.2.23:80=1" {
		t.Errorf("after verdicts weights = %s, want the configured ones", got)
	}
	if len(p.Memory.Adopted) != 0 {
		t.Errorf("adopted entries left after every backend settled: %v", p.Memory.Adopted)
	}
}

// weightsOf renders a planned service's destinations in address order.
func weightsOf(s ipvs.Service) string { return destWeights(s) }
