package main

import (
	"strings"
	"testing"

	"github.com/anycast-director/director/config"
)

// TestNeededCapabilities: what each kind of configuration needs, and that a
// local-only director on loopback VIPs needs nothing (it runs unprivileged).
func TestNeededCapabilities(t *testing.T) {
	cases := []struct {
		name, yaml string
		start      int
		want       []string
	}{
		{"local example", "", 1024, nil},
		{"ipvs and bgp", `director: { name: d1 }
bgp: { asn: 65100, router_id: 10.0.0.1, peers: [ { address: 10.0.0.2, asn: 65000 } ] }
services: [ { name: web, vip: 198.18.0.10, port: 80, backends: [ { address: 10.0.2.1 } ] } ]
`, 1024, []string{"CAP_NET_ADMIN: program IPVS, bind VIPs on lo", "CAP_NET_BIND_SERVICE: listen for BGP on port 179"}},
		{"low ports allowed by the sysctl", `director: { name: d1 }
metrics: { listen: "127.0.0.1:99" }
bgp: { asn: 65100, router_id: 10.0.0.1, peers: [ { address: 10.0.0.2, asn: 65000 } ] }
services: [ { name: web, vip: 198.18.0.10, port: 80, forwarding: local } ]
`, 0, []string{"CAP_NET_ADMIN: bind VIPs on lo"}},
		{"metrics on a low port", `director: { name: d1, announce: none }
metrics: { listen: "127.0.0.1:99" }
services: [ { name: web, vip: 127.0.0.10, port: 80, forwarding: local } ]
`, 1024, []string{"CAP_NET_BIND_SERVICE: listen for metrics on port 99"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var cfg *config.Config
			var err error
			if c.yaml == "" {
				cfg, err = config.Load("../../examples/local.yaml")
			} else {
				cfg, err = config.Parse("t.yaml", []byte(c.yaml))
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, n := range neededCapabilities(cfg, c.start) {
				got = append(got, n.name+": "+n.why)
			}
			if strings.Join(got, "\n") != strings.Join(c.want, "\n") {
				t.Errorf("got %q, want %q", got, c.want)
			}
		})
	}
}
