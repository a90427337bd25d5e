package routerconfig

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/config"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// goldenCase is one set of director configs (a folder under testdata) and the
// options for the router.
type goldenCase struct {
	name string
	opts Options
}

// goldenCases are shared with the privileged tests, which feed the same output
// to real FRR and BIRD.
func goldenCases() []goldenCase {
	return []goldenCase{
		{name: "single"},
		{name: "three-asn"},
		{name: "md5-bfd"},
		{name: "ipv6"},
		{name: "ibgp"},
		{name: "ospf", opts: Options{
			RouterID: netip.MustParseAddr("10.0.0.1"),
			OSPF:     OSPFOptions{Interfaces: []string{"eth1", "eth2"}, PointToPoint: true},
		}},
	}
}

// loadDir loads every director config of a testdata folder with the real
// loader.
func loadDir(t *testing.T, dir string) []*config.Config {
	t.Helper()
	files, err := filepath.Glob(filepath.Join("testdata", dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no director configs in testdata/%s: %v", dir, err)
	}
	var cfgs []*config.Config
	for _, f := range files {
		c, err := config.Load(f)
		if err != nil {
			t.Fatalf("load %s: %v", f, err)
		}
		cfgs = append(cfgs, c)
	}
	return cfgs
}

func goldenPath(name, flavor string) string {
	return filepath.Join("testdata", "golden", name+"."+flavor+".conf")
}

func TestGenerateGolden(t *testing.T) {
	for _, gc := range goldenCases() {
		for _, flavor := range []string{"frr", "bird"} {
			t.Run(gc.name+"/"+flavor, func(t *testing.T) {
				got, err := Generate(flavor, loadDir(t, gc.name), gc.opts)
				if err != nil {
					t.Fatalf("Generate: %v", err)
				}
				path := goldenPath(gc.name, flavor)
				if *update {
					if err := os.WriteFile(path, got, 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(path)
				if err != nil {
					t.Fatalf("read golden file (run `go test ./routing/routerconfig -update` to create it): %v", err)
				}
				if diff := cmp.Diff(string(want), string(got)); diff != "" {
					t.Errorf("%s differs (-want +got); if the change is intended, rerun with -update:\n%s", path, diff)
				}
			})
		}
	}
}

// TestGenerateContent checks the properties the golden files are meant to
// show, so a careless -update cannot bless a broken output.
func TestGenerateContent(t *testing.T) {
	tests := []struct {
		dir     string
		flavor  string
		opts    Options
		want    []string
		notWant []string
	}{
		{dir: "single", flavor: "frr", want: []string{
			"router bgp 65000",
			" bgp router-id 10.0.1.1",
			" neighbor 10.0.1.11 remote-as 65101",
			" neighbor 10.0.1.11 update-source 10.0.1.1",
			" neighbor 10.0.1.11 timers 1 3",
			" neighbor 10.0.1.11 timers connect 1",
			" neighbor 10.0.1.11 advertisement-interval 0",
			"ip prefix-list DIRECTORD-VIPS-V4 seq 5 permit 198.18.0.10/32\n",
			"  neighbor 10.0.1.11 route-map DIRECTORD-IN-V4 in",
			"  neighbor 10.0.1.11 route-map DIRECTORD-OUT out",
			"  neighbor 10.0.1.11 maximum-prefix 1 restart 1",
			"  maximum-paths 8",
		}, notWant: []string{"multipath-relax", "listen range", "no bgp ebgp-requires-policy", "ipv6", "bfd", "password", "seq 10"}},
		{dir: "three-asn", flavor: "frr", want: []string{
			" bgp bestpath as-path multipath-relax",
			" neighbor 10.0.1.11 remote-as 65101", " neighbor 10.0.1.12 remote-as 65102", " neighbor 10.0.1.13 remote-as 65103",
			"no local_address for peer 10.0.1.1, so its bgp.router_id",
			"permit 198.18.0.53/32", "permit 198.18.0.54/32", "permit 198.18.0.55/32",
			"maximum-prefix 4 restart 1",
		}},
		{dir: "md5-bfd", flavor: "frr", want: []string{
			" neighbor 10.0.1.11 password s3cret-d1",
			" neighbor 10.255.0.12 password s3cret-d2",
			" profile directord-100ms-x3\n  transmit-interval 100\n  receive-interval 100\n  detect-multiplier 3",
			" neighbor 10.0.1.11 bfd profile directord-100ms-x3",
			" neighbor 10.0.1.13 ttl-security hops 1",
			"! no BFD: FRR 8.4 runs multihop BFD with a ttl-security neighbor",
			" neighbor 10.255.0.12 ebgp-multihop 2",
			" neighbor 10.255.0.12 passive",
			" neighbor 10.0.1.11 timers 3 9",
			"! graceful restart: keep the director's routes up to 45 s",
			" neighbor 10.0.1.11 graceful-restart-helper",
		}, notWant: []string{"multipath-relax", "check-control-plane-failure", "neighbor 10.0.1.13 graceful-restart"}},
		{dir: "ipv6", flavor: "frr", want: []string{
			" neighbor 2001:db8:1::11 remote-as 65101",
			" neighbor 2001:db8:1::11 update-source 2001:db8:1::1",
			" neighbor 2001:db8:1::12 remote-as 65000",
			"ipv6 prefix-list DIRECTORD-VIPS-V6 seq 5 permit 2001:db8:ad::10/128",
			" address-family ipv6 unicast\n  maximum-paths 8\n  maximum-paths ibgp 8\n  neighbor 2001:db8:1::11 activate",
			"  neighbor 2001:db8:1::12 route-map DIRECTORD-IN-V6 in",
			" address-family ipv4 unicast\n  maximum-paths 8\n  maximum-paths ibgp 8\n  neighbor 10.0.1.11 route-map DIRECTORD-IN-V4 in",
			"  no neighbor 2001:db8:1::11 activate\n  no neighbor 2001:db8:1::12 activate\n exit-address-family",
		}, notWant: []string{"neighbor 10.0.1.11 activate", "bgp default ipv4-unicast\n no"}},
		{dir: "ospf", flavor: "frr", opts: Options{RouterID: netip.MustParseAddr("10.0.0.1"), OSPF: OSPFOptions{Interfaces: []string{"eth1"}}}, want: []string{
			"router ospf\n", " ospf router-id 10.0.0.1", " timers lsa min-arrival 0",
			"interface eth1\n ip ospf area 0.0.0.0\n ip ospf hello-interval 1\n ip ospf dead-interval 3\n",
			"router ospf6", " ipv6 ospf6 area 0.0.0.0",
		}, notWant: []string{"router bgp", "point-to-point"}},
		{dir: "single", flavor: "bird", want: []string{
			"router id 10.0.1.1;",
			"define DIRECTORD_VIPS_V4 = [ 198.18.0.10/32 ];",
			"  local 10.0.1.1 as 65000;", "  neighbor 10.0.1.11 as 65101;",
			"  hold time 3;", "  keepalive time 1;", "  connect retry time 1;",
			"    import filter directord_in_v4;", "    import limit 1 action restart;", "    export none;",
			"  merge paths on limit 8;",
		}, notWant: []string{"bfd", "password", "ipv6"}},
		{dir: "md5-bfd", flavor: "bird", want: []string{
			`  password "s3cret-d1";`,
			"  bfd { min rx interval 100 ms; min tx interval 100 ms; multiplier 3; };",
			"protocol bfd directord_bfd {", "  ttl security on;", "  multihop 2;", "  passive on;",
			"protocol direct directord_direct {", "import where 10.255.0.12 ~ net;", "  learn;",
			"  graceful restart aware;",
		}, notWant: []string{"300 ms", "graceful;", "graceful }"}},
		{dir: "ibgp", flavor: "bird", want: []string{
			"  neighbor 10.0.1.11 as 65000;\n", "  direct;\n  bfd {",
			"  neighbor 10.0.9.12 as 65000;", "  multihop 2;", "protocol direct directord_direct {",
		}},
		{dir: "ibgp", flavor: "frr", want: []string{
			" maximum-paths ibgp 8", " neighbor 10.0.1.11 bfd profile directord-100ms-x3",
		}, notWant: []string{"ebgp-multihop"}},
		{dir: "ospf", flavor: "bird", opts: Options{RouterID: netip.MustParseAddr("10.0.0.1"), OSPF: OSPFOptions{Interfaces: []string{"eth1", "eth2"}, PointToPoint: true}}, want: []string{
			"protocol ospf v2 directord_ospf_v2 {", "protocol ospf v3 directord_ospf_v3 {",
			`    interface "eth1", "eth2" { type ptp; hello 1; dead 3; };`, "  ecmp yes limit 8;",
		}, notWant: []string{"protocol bgp"}},
	}
	for _, tt := range tests {
		t.Run(tt.dir+"/"+tt.flavor, func(t *testing.T) {
			out, err := Generate(tt.flavor, loadDir(t, tt.dir), tt.opts)
			if err != nil {
				t.Fatalf("Generate: %v", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(string(out), w) {
					t.Errorf("output lacks %q", w)
				}
			}
			for _, w := range tt.notWant {
				if strings.Contains(string(out), w) {
					t.Errorf("output contains %q", w)
				}
			}
			if t.Failed() {
				t.Logf("output:\n%s", out)
			}
		})
	}
}

// parse builds a director config from YAML with the real validator.
func parse(t *testing.T, name, yaml string) *config.Config {
	t.Helper()
	c, err := config.Parse(name, []byte(yaml))
	if err != nil {
		t.Fatalf("parse %s: %v", name, err)
	}
	c.Source = name // as config.Load does
	return c
}

const svc = `
services:
  - { name: web, vip: 198.18.0.10, port: 80, backends: [ { address: 10.0.2.21 } ] }
`

func bgpDirector(t *testing.T, name string, asn int, peer string) *config.Config {
	t.Helper()
	return parse(t, name+".yaml", "director: { name: "+name+", announce: bgp }\nbgp:\n  asn: "+strconv.Itoa(asn)+
		"\n  router_id: 10.0.1.99\n  peers:\n    - "+peer+"\n"+svc)
}

func TestGenerateErrors(t *testing.T) {
	v6NoLocal := parse(t, "v6.yaml", "director: { name: v6, announce: bgp }\nbgp:\n  asn: 65101\n  router_id: 10.0.1.11\n  peers:\n    - { address: \"2001:db8:1::1\", asn: 65000 }\n"+
		"services:\n  - { name: web6, vip: \"2001:db8:ad::10\", port: 80, backends: [ { address: \"2001:db8:2::21\" } ] }\n")
	none := parse(t, "none.yaml", "director: { name: n1, announce: none }\n"+svc)
	kernel := parse(t, "k.yaml", "director: { name: k1, announce: kernel }\n"+svc)
	tests := []struct {
		name    string
		flavor  string
		cfgs    []*config.Config
		opts    Options
		wantErr []string
	}{
		{name: "unknown flavor", flavor: "quagga", cfgs: []*config.Config{bgpDirector(t, "d1", 65101, "{ address: 10.0.1.1, asn: 65000, local_address: 10.0.1.11 }")},
			wantErr: []string{`unknown router flavor "quagga"`}},
		{name: "no configs", flavor: "frr", wantErr: []string{"no director configuration given"}},
		{name: "router ASN disagreement", flavor: "frr", cfgs: []*config.Config{
			bgpDirector(t, "d1", 65101, "{ address: 10.0.1.1, asn: 65000, local_address: 10.0.1.11 }"),
			bgpDirector(t, "d2", 65102, "{ address: 10.0.1.1, asn: 65001, local_address: 10.0.1.12 }"),
		}, wantErr: []string{"disagree about the router's AS number", "d1.yaml: director d1, bgp.peers[0] (10.0.1.1) says 65000", "d2.yaml: director d2, bgp.peers[0] (10.0.1.1) says 65001"}},
		{name: "router ASN option disagrees", flavor: "frr", opts: Options{RouterASN: 64999}, cfgs: []*config.Config{
			bgpDirector(t, "d1", 65101, "{ address: 10.0.1.1, asn: 65000, local_address: 10.0.1.11 }"),
		}, wantErr: []string{"the router AS option says 64999", "says 65000"}},
		{name: "same director address twice", flavor: "bird", cfgs: []*config.Config{
			bgpDirector(t, "d1", 65101, "{ address: 10.0.1.1, asn: 65000 }"),
			bgpDirector(t, "d2", 65102, "{ address: 10.0.1.1, asn: 65000 }"),
		}, wantErr: []string{"directors d1 (d1.yaml) and d2 (d2.yaml) both use 10.0.1.99 as the director address"}},
		{name: "duplicate director names", flavor: "frr", cfgs: []*config.Config{
			bgpDirector(t, "d1", 65101, "{ address: 10.0.1.1, asn: 65000, local_address: 10.0.1.11 }"),
			bgpDirector(t, "d1", 65101, "{ address: 10.0.1.1, asn: 65000, local_address: 10.0.1.12 }"),
		}, wantErr: []string{`both name their director "d1"`}},
		{name: "IPv6 session without local_address", flavor: "frr", cfgs: []*config.Config{v6NoLocal},
			wantErr: []string{"an IPv6 session needs the director's IPv6 address", "set local_address"}},
		{name: "password a router cannot carry", flavor: "frr", cfgs: []*config.Config{
			bgpDirector(t, "d1", 65101, `{ address: 10.0.1.1, asn: 65000, local_address: 10.0.1.11, password: "two words" }`),
		}, wantErr: []string{"the MD5 password contains a space"}},
		{name: "no peer entry for this router", flavor: "frr", opts: Options{RouterAddresses: []netip.Addr{netip.MustParseAddr("10.0.9.1")}}, cfgs: []*config.Config{
			bgpDirector(t, "d1", 65101, "{ address: 10.0.1.1, asn: 65000, local_address: 10.0.1.11 }"),
		}, wantErr: []string{"director d1 has no peer entry for this router"}},
		{name: "nobody announces", flavor: "frr", cfgs: []*config.Config{none}, wantErr: []string{"no director announces to this router"}},
		{name: "OSPF without interfaces", flavor: "frr", opts: Options{RouterID: netip.MustParseAddr("10.0.0.1")}, cfgs: []*config.Config{kernel},
			wantErr: []string{"directors k1 announce through OSPF", "give the router's interfaces"}},
		{name: "OSPF without router ID", flavor: "bird", opts: Options{OSPF: OSPFOptions{Interfaces: []string{"eth1"}}}, cfgs: []*config.Config{kernel},
			wantErr: []string{"no router ID"}},
		{name: "bad OSPF interface name", flavor: "frr", opts: Options{RouterID: netip.MustParseAddr("10.0.0.1"), OSPF: OSPFOptions{Interfaces: []string{"a very long interface name"}}}, cfgs: []*config.Config{kernel},
			wantErr: []string{"is not a valid interface name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := Generate(tt.flavor, tt.cfgs, tt.opts)
			if err == nil {
				t.Fatalf("Generate succeeded, want an error; output:\n%s", out)
			}
			for _, w := range tt.wantErr {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
}

func TestGenerateOptions(t *testing.T) {
	cfgs := []*config.Config{
		bgpDirector(t, "d1", 65101, "{ address: 10.0.1.1, asn: 65000, local_address: 10.0.1.11 }"),
		// A second router this generation is not for.
		parse(t, "d2.yaml", "director: { name: d2, announce: bgp }\nbgp:\n  asn: 65102\n  router_id: 10.0.1.12\n  peers:\n"+
			"    - { address: 10.0.1.1, asn: 65000, local_address: 10.0.1.12 }\n    - { address: 10.0.2.1, asn: 65500, local_address: 10.0.2.12 }\n"+svc),
	}
	out, err := Generate("frr", cfgs, Options{
		RouterAddresses: []netip.Addr{netip.MustParseAddr("10.0.1.1")},
		RouterASN:       65000,
		RouterID:        netip.MustParseAddr("192.0.2.1"),
		MaximumPaths:    4,
		MaxPrefix:       100,
	})
	if err != nil {
		t.Fatalf("Generate: %v", err)
	}
	s := string(out)
	for _, w := range []string{" bgp router-id 192.0.2.1", "  maximum-paths 4", "maximum-prefix 100 restart 1", " neighbor 10.0.1.12 remote-as 65102"} {
		if !strings.Contains(s, w) {
			t.Errorf("output lacks %q", w)
		}
	}
	for _, w := range []string{"10.0.2.12", "65500", "router-id: the lowest"} {
		if strings.Contains(s, w) {
			t.Errorf("output contains %q (a session of another router, or a note for a derived router ID)", w)
		}
	}
}
