package config

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const helpersYAML = `director: { name: d1 }
services:
  - name: web
    vip: 198.18.0.10
    port: 80
    health: { type: http, path: /healthz, port: 8081 }
    advertise: { communities: ["65100:1"], med: 7 }
    backends: [ { address: 10.0.2.21 }, { address: 10.0.2.22, weight: 5 } ]
  - name: web-tls
    vip: 198.18.0.10
    port: 443
    advertise: { communities: ["65100:1"], med: 7 }
    backends: [ { address: 10.0.2.21 } ]
  - name: dns
    vip: 198.18.0.53
    port: 53
    forwarding: local
`

func TestHelpers(t *testing.T) {
	c := mustParse(t, helpersYAML)
	addrs := cmp.Comparer(func(a, b netip.Addr) bool { return a == b })
	addrPorts := cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })

	if diff := cmp.Diff([]netip.Addr{netip.MustParseAddr("198.18.0.10"), netip.MustParseAddr("198.18.0.53")}, c.VIPs(), addrs); diff != "" {
		t.Errorf("VIPs (-want +got):\n%s", diff)
	}
	var names []string
	for _, s := range c.ServicesForVIP(netip.MustParseAddr("198.18.0.10")) {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff([]string{"web", "web-tls"}, names); diff != "" {
		t.Errorf("ServicesForVIP (-want +got):\n%s", diff)
	}
	if _, ok := c.ServiceByName("nope"); ok {
		t.Error("ServiceByName found a service that does not exist")
	}
	web, ok := c.ServiceByName("web")
	if !ok {
		t.Fatal("ServiceByName(web) not found")
	}
	targets := []netip.AddrPort{netip.MustParseAddrPort("10.0.2.21:8081"), netip.MustParseAddrPort("10.0.2.22:8081")}
	if diff := cmp.Diff(targets, web.HealthTargets(), addrPorts); diff != "" {
		t.Errorf("HealthTargets with a check port (-want +got):\n%s", diff)
	}
	dns, _ := c.ServiceByName("dns")
	if diff := cmp.Diff([]netip.AddrPort{netip.MustParseAddrPort("198.18.0.53:53")}, dns.HealthTargets(), addrPorts); diff != "" {
		t.Errorf("HealthTargets of a local service (-want +got):\n%s", diff)
	}
}

// TestCopiesDoNotAlias: what the helpers and Clone return can be modified
// without changing the shared Config.
func TestCopiesDoNotAlias(t *testing.T) {
	c := mustParse(t, helpersYAML)
	before := mustParse(t, helpersYAML)
	web, _ := c.ServiceByName("web")
	web.Backends[0].Weight = 99
	web.SchedulerFlags[0] = "x"
	web.Health.ExpectStatus[0] = 500
	web.Advertise.Communities[0] = 1
	*web.Advertise.MED = 1
	for _, s := range c.ServicesForVIP(web.VIP) {
		s.Backends[0].Weight = 42
	}
	cl := c.Clone()
	cl.Services[0].Backends[1].Weight = 0
	cl.Services[0].Name = "changed"
	cl.IPVS.Sysctls = map[string]int{"x": 1}
	if diff := cmp.Diff(before, c, cmpConfig()...); diff != "" {
		t.Errorf("the shared Config changed (-before +after):\n%s", diff)
	}
	if cmp.Equal(cl, c, cmpConfig()...) {
		t.Error("Clone shares memory with the original, or the edits were lost")
	}
}
