package announcer

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
)

// holdView renders a plan's destinations of its first service and which of
// its backends are held, with the service's healthy count.
func holdView(p Plan) string {
	if len(p.IPVS) == 0 {
		return fmt.Sprintf("ipvs none held %d healthy %d", len(p.Services[0].Backends), p.Services[0].Healthy)
	}
	var ds []string
	for _, d := range p.IPVS[0].Destinations {
		ds = append(ds, fmt.Sprintf("%s w%d", d.Address, d.Weight))
	}
	var held []string
	for _, bp := range p.Services[0].Backends {
		if bp.Held {
			held = append(held, bp.Address.String())
		}
	}
	return fmt.Sprintf("ipvs [%s] held [%s] healthy %d", strings.Join(ds, " "), strings.Join(held, " "), p.Services[0].Healthy)
}

// TestPlanHoldsNewBackends: a service's backends that are not in the kernel
// yet wait outside it until each has a first verdict, and then enter
// together at their verdicts' weights (one write each); a held backend does
// not count as healthy. A new service with nothing to program waits with
// them, so it is created with its destinations (and mh built once). Backends already in the kernel (planned before, or
// adopted after a restart) are never held, and a target that never gets a
// verdict stops holding the others after maxHold.
func TestPlanHoldsNewBackends(t *testing.T) {
	two := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.22", "10.0.2.21"))
	three := testConfig(webService("web", "198.18.0.10", 1, "10.0.2.23", "10.0.2.22", "10.0.2.21"))
	var mem Memory
	step := func(name string, cfg *config.Config, at time.Duration, states map[string]health.State, want string) Plan {
		t.Helper()
		p := plan(Input{Config: cfg, Health: healthOf(cfg, states), Now: t0.Add(at), Memory: mem})
		mem = p.Memory
		if got := holdView(p); got != want {
			t.Errorf("%s: %s, want %s", name, got, want)
		}
		return p
	}
	p := step("no verdict: the service waits too", two, 0, nil, "ipvs none held 2 healthy 0")
	if p.Wake != t0.Add(maxHold) {
		t.Errorf("wake at %v, want the hold's end %v", p.Wake.Sub(t0), maxHold)
	}
	if r := p.Services[0].Backends[0].Reason; !strings.Contains(r, "2 new backend(s) of this service without a first verdict") {
		t.Errorf("held backend's reason %q does not say why", r)
	}
	step("one up, one unknown", two, time.Second, map[string]health.State{"10.0.2.21": up},
		"ipvs none held 2 healthy 0")
	step("both known", two, 2*time.Second, map[string]health.State{"10.0.2.21": up, "10.0.2.22": down},
		"ipvs [10.0.2.22 w0 10.0.2.21 w1] held [] healthy 1")
	both := map[string]health.State{"10.0.2.21": up, "10.0.2.22": up}
	step("a reload adds a backend", three, 3*time.Second, both,
		"ipvs [10.0.2.22 w1 10.0.2.21 w1] held [10.0.2.23] healthy 2")
	step("just before the bound", three, 3*time.Second+maxHold-time.Millisecond, both,
		"ipvs [10.0.2.22 w1 10.0.2.21 w1] held [10.0.2.23] healthy 2")
	step("a verdict that never comes stops holding at the bound", three, 3*time.Second+maxHold, both,
		"ipvs [10.0.2.23 w0 10.0.2.22 w1 10.0.2.21 w1] held [] healthy 2")

	key := ipvs.Key{VIP: netip.MustParseAddr("198.18.0.10"), Port: 80, Protocol: uint8(config.TCP)}
	mem = Memory{Adopted: map[DestID]int{{Service: key, Dest: netip.MustParseAddrPort("10.0.2.21:80")}: 3}}
	step("restart: the adopted backend stays, the other is held", two, 0, nil,
		"ipvs [10.0.2.21 w3] held [10.0.2.22] healthy 0")
	mem = Memory{Previous: NewPlanned([]ipvs.Service{{Key: key, Scheduler: "mh"}})}
	step("a service already in the kernel stays there while its backends are held", two, 0, nil,
		"ipvs [] held [10.0.2.22 10.0.2.21] healthy 0")
}
