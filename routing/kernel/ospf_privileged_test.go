//go:build linux && privileged

package kernel

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/netlab"
	"github.com/anycast-director/director/routing"
	"github.com/anycast-director/director/routing/routerconfig"
)

const (
	ospfVIP4 = "198.18.0.10"
	ospfVIP6 = "2001:db8:ad::10"
)

// ospfDirector is one director of the OSPF test: its namespace, its link
// addresses, and directord's two halves running inside it.
type ospfDirector struct {
	name  string
	ns    *netlab.NS
	addr  string // IPv4 address on the link to the router
	ll6   string // IPv6 link-local address on that link
	table int
	ads   *Advertiser
	vips  *VIPs
	v6    bool // the variant carries IPv6 VIPs to the router
	bind  Binding
}

// TestPrivilegedOSPFAdvertiser runs the Advertiser end to end over OSPF: a
// router running FRR with the configuration routerconfig generates, and three
// directors, each with a routing daemon configured from the blocks of
// docs/ospf.md:
//
//	d1: FRR, VIP routes in table 200 (ip import-table), IPv4;
//	d2: FRR, VIP routes in the main table (redistribute kernel route-map), IPv4 and IPv6;
//	d3: BIRD, VIP routes in table 200 (kernel protocol, krt_source), IPv4 and IPv6.
//
// The router's kernel FIB must gain and lose each director's next hop as its
// Advertiser adds and removes the advertisement, while the VIPs stay bound on
// the directors' lo, and routes that are not VIPs must never leak.
func TestPrivilegedOSPFAdvertiser(t *testing.T) {
	lab := netlab.New(t)
	rtr := lab.Namespace("rtr")
	rtr.Router()
	dirs := []*ospfDirector{
		// FRR's zebra would turn a VIP address into a connected route that
		// beats the advertisement route: FRR directors bind VIPs as local
		// routes. BIRD never sees addresses as routes: address binding.
		{name: "d1", table: 200, bind: BindLocalRoute},
		{name: "d2", table: unixMainTable, v6: true, bind: BindLocalRoute},
		{name: "d3", table: 200, v6: true, bind: BindAddress},
	}
	var rtrIfs []string
	var cfgs []*config.Config
	for i, d := range dirs {
		d.ns = lab.Namespace(d.name)
		d.addr = fmt.Sprintf("10.0.%d.11", i+1)
		rif, _ := lab.Link(rtr, []string{fmt.Sprintf("10.0.%d.1/24", i+1)}, d.ns, []string{d.addr + "/24"})
		rtrIfs = append(rtrIfs, rif)
		d.ll6 = linkLocal(t, d.ns, "eth0")
		cfgs = append(cfgs, directorConfig(t, d.name, d.table))
	}

	// The router: exactly what `directord router-config -flavor frr` prints.
	rtrConf, err := routerconfig.Generate("frr", cfgs, routerconfig.Options{
		RouterID: netip.MustParseAddr("10.0.0.1"),
		OSPF:     routerconfig.OSPFOptions{Interfaces: rtrIfs, PointToPoint: true},
	})
	if err != nil {
		t.Fatalf("router-config: %v", err)
	}
	start := time.Now()
	router := rtr.StartFRR(string(rtrConf), "ospfd", "ospf6d")

	// The directors' routing daemons, configured from docs/ospf.md.
	docs := docBlocks(t)
	dirs[0].ns.StartFRR(forDirector(docs["ospf-director-frr-table"], dirs[0]), "ospfd")
	dirs[1].ns.StartFRR(forDirector(docs["ospf-director-frr-main"], dirs[1]), "ospfd", "ospf6d")
	dirs[2].ns.StartBIRD(forDirector(docs["ospf-director-bird"], dirs[2]))

	// A route of the operator's in d2's main table: never touched by the
	// Advertiser, never redistributed thanks to the documented route-map.
	dirs[1].ns.MustRun("ip", "route", "add", "203.0.113.0/24", "dev", "eth0", "proto", "static")

	ctx := context.Background()
	for _, d := range dirs {
		path := nsPath(d.ns)
		d.vips, err = NewVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto, Namespace: path, Binding: d.bind})
		if err != nil {
			t.Fatalf("%s: NewVIPs: %v", d.name, err)
		}
		t.Cleanup(func() { d.vips.Close() })
		d.ads, err = NewAdvertiser(discard(), AdvertiserOptions{Table: d.table, Protocol: testProto, Interface: "lo", Namespace: path})
		if err != nil {
			t.Fatalf("%s: NewAdvertiser: %v", d.name, err)
		}
		t.Cleanup(func() { d.ads.Close() })
		if err := d.vips.Set(ctx, addrs(ospfVIP4, ospfVIP6)); err != nil {
			t.Fatalf("%s: bind VIPs: %v", d.name, err)
		}
	}

	// Bound but not advertised: the routers must not see the VIPs yet.
	want4 := func(ds ...*ospfDirector) []string {
		var out []string
		for _, d := range ds {
			out = append(out, d.addr)
		}
		return out
	}
	want6 := func(ds ...*ospfDirector) []string {
		var out []string
		for _, d := range ds {
			if d.v6 {
				out = append(out, d.ll6)
			}
		}
		return out
	}
	netlab.MustWait(t, 30*time.Second, "OSPF adjacencies Full with all directors", func() error {
		out, err := router.Vtysh("show ip ospf neighbor")
		if err != nil {
			return err
		}
		if n := strings.Count(out, "Full/"); n != len(dirs) {
			return fmt.Errorf("%d of %d neighbors Full:\n%s", n, len(dirs), out)
		}
		return nil
	})
	t.Logf("measured: OSPF adjacencies Full %v after the router started (point-to-point, hello 1 s)", time.Since(start).Round(10*time.Millisecond))
	if got, _ := rtr.Gateways(ospfVIP4); len(got) != 0 {
		t.Fatalf("router has a route to %s via %v before anything was advertised (bound VIPs must not be advertised)", ospfVIP4, got)
	}

	advertise := func(d *ospfDirector, on bool) {
		t.Helper()
		var set []routing.Advertisement
		if on {
			set = []routing.Advertisement{
				{Prefix: netip.MustParsePrefix(ospfVIP4 + "/32")},
				{Prefix: netip.MustParsePrefix(ospfVIP6 + "/128")},
			}
		}
		if err := d.ads.Set(ctx, set); err != nil {
			t.Fatalf("%s: Advertiser.Set(%v): %v", d.name, on, err)
		}
	}
	type fib struct{ v4, v6 []string }
	expect := func(step string, limit time.Duration, want fib) {
		t.Helper()
		took := waitFIB(t, rtr, map[string][]string{ospfVIP4: want.v4, ospfVIP6: want.v6}, limit)
		t.Logf("measured: %s: router FIB right after %v (IPv4), %v (IPv6)", step,
			took[ospfVIP4].Round(time.Millisecond), took[ospfVIP6].Round(time.Millisecond))
	}

	for _, d := range dirs {
		advertise(d, true)
	}
	expect("all three advertise", 15*time.Second, fib{want4(dirs...), want6(dirs...)})

	// FRR with a table of its own: withdraw and re-announce at once.
	advertise(dirs[0], false)
	expect("d1 (FRR, table 200) withdraws", 2*time.Second, fib{want4(dirs[1], dirs[2]), want6(dirs...)})
	assertBound(t, dirs[0])
	advertise(dirs[0], true)
	expect("d1 re-announces", 2*time.Second, fib{want4(dirs...), want6(dirs...)})

	// FRR with the main table, both families; ospf6d has no LSA throttle
	// setting, so its re-announce may take up to MinLSInterval (5 s).
	advertise(dirs[1], false)
	expect("d2 (FRR, main table) withdraws", 2*time.Second, fib{want4(dirs[0], dirs[2]), want6(dirs[2])})
	assertBound(t, dirs[1])
	advertise(dirs[1], true)
	expect("d2 re-announces", 8*time.Second, fib{want4(dirs...), want6(dirs...)})

	// BIRD: withdraw at once; a re-announce within 5 s of the withdraw waits
	// for BIRD's fixed MinLSInterval.
	advertise(dirs[2], false)
	expect("d3 (BIRD, table 200) withdraws", 2*time.Second, fib{want4(dirs[0], dirs[1]), want6(dirs[1])})
	assertBound(t, dirs[2])
	advertise(dirs[2], true)
	expect("d3 re-announces", 8*time.Second, fib{want4(dirs...), want6(dirs...)})

	// Nothing but the VIPs reached the router, and the operator's route on
	// d2 is still there.
	if got, _ := rtr.Gateways("203.0.113.0/24"); len(got) != 0 {
		t.Errorf("the operator's kernel route 203.0.113.0/24 on d2 leaked to the router via %v", got)
	}
	if out := dirs[1].ns.MustRun("ip", "route", "show", "203.0.113.0/24"); !strings.Contains(out, "proto static") {
		t.Errorf("the operator's route on d2 is gone: %q", out)
	}

	// Everyone withdraws: the route disappears, the VIPs stay bound.
	for _, d := range dirs {
		advertise(d, false)
	}
	expect("all withdraw", 2*time.Second, fib{nil, nil})
	for _, d := range dirs {
		assertBound(t, d)
		got, err := d.ads.Advertised(ctx)
		if err != nil || len(got) != 0 {
			t.Errorf("%s: Advertised() = %v, %v after withdrawing everything", d.name, got, err)
		}
	}
}

// waitFIB polls the router's FIB every 5 ms, bounded, until the route to
// each destination has exactly the wanted next hops, and returns for each
// destination when it last changed to the wanted state.
func waitFIB(t *testing.T, rtr *netlab.NS, want map[string][]string, limit time.Duration) map[string]time.Duration {
	t.Helper()
	start := time.Now()
	took := map[string]time.Duration{}
	_, err := netlab.Wait(limit, 5*time.Millisecond, func() error {
		var errs []error
		for dst, w := range want {
			w = slices.Clone(w)
			slices.Sort(w)
			got, err := rtr.Gateways(dst)
			switch {
			case err != nil:
				errs = append(errs, err)
			case !slices.Equal(got, w):
				delete(took, dst)
				errs = append(errs, fmt.Errorf("%s has next hops %v, want %v", dst, got, w))
			default:
				if _, seen := took[dst]; !seen {
					took[dst] = time.Since(start)
				}
			}
		}
		return errors.Join(errs...)
	})
	if err != nil {
		out, _ := rtr.Run("ip", "route", "show", "table", "all")
		t.Fatalf("%s: %v\n%s", rtr.Name, err, out)
	}
	return took
}

// unixMainTable is RT_TABLE_MAIN.
const unixMainTable = 254

// assertBound checks that withdrawing left the VIPs bound on the director: the
// kernel still routes them locally, and VIPs still owns them.
func assertBound(t *testing.T, d *ospfDirector) {
	t.Helper()
	for _, vip := range []string{ospfVIP4, ospfVIP6} {
		out := d.ns.MustRun("ip", "route", "get", vip)
		if !strings.HasPrefix(strings.TrimSpace(out), "local "+vip) {
			t.Errorf("%s: VIP %s is no longer local after the withdraw: ip route get says %q", d.name, vip, out)
		}
	}
	owned, err := d.vips.Owned(context.Background())
	if err != nil || len(owned) != 2 {
		t.Errorf("%s: VIPs.Owned() = %v, %v after the withdraw; want both VIPs", d.name, owned, err)
	}
}

// directorConfig builds a director configuration with announce: kernel
// through the real loader.
func directorConfig(t *testing.T, name string, table int) *config.Config {
	t.Helper()
	yaml := fmt.Sprintf(`director: { name: %s, announce: kernel }
kernel: { table: %d, protocol: %d }
services:
  - { name: web, vip: %s, port: 80, backends: [ { address: 10.0.2.21 } ] }
  - { name: web6, vip: "%s", port: 80, backends: [ { address: "2001:db8:2::21" } ] }
`, name, table, testProto, ospfVIP4, ospfVIP6)
	c, err := config.Parse(name+".yaml", []byte(yaml))
	if err != nil {
		t.Fatalf("director config %s: %v", name, err)
	}
	c.Source = name + ".yaml"
	return c
}

// docBlocks returns the fenced code blocks of docs/ospf.md by their tag (the
// second word of the fence's info string).
func docBlocks(t *testing.T) map[string]string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "ospf.md"))
	if err != nil {
		t.Fatalf("read docs/ospf.md: %v", err)
	}
	re := regexp.MustCompile("(?ms)^```\\w+ (ospf-[\\w-]+)\n(.*?)^```")
	out := map[string]string{}
	for _, m := range re.FindAllStringSubmatch(string(b), -1) {
		out[m[1]] = m[2]
	}
	for _, tag := range []string{"ospf-director-frr-table", "ospf-director-frr-main", "ospf-director-bird"} {
		if out[tag] == "" {
			t.Fatalf("docs/ospf.md has no block tagged %s", tag)
		}
	}
	return out
}

// forDirector adapts a documented director configuration to one director of
// the test: its router ID, its table, and the test's protocol number.
func forDirector(block string, d *ospfDirector) string {
	r := strings.NewReplacer("10.0.1.11", d.addr, "krt_source = 250", fmt.Sprintf("krt_source = %d", testProto))
	return r.Replace(block)
}

// linkLocal returns the IPv6 link-local address of a device.
func linkLocal(t *testing.T, ns *netlab.NS, dev string) string {
	t.Helper()
	var ll string
	netlab.MustWait(t, 5*time.Second, "a link-local address on "+dev, func() error {
		out := ns.MustRun("ip", "-6", "-o", "addr", "show", "dev", dev, "scope", "link")
		f := strings.Fields(out)
		for i, w := range f {
			if w == "inet6" && i+1 < len(f) {
				ll = strings.Split(f[i+1], "/")[0]
				return nil
			}
		}
		return fmt.Errorf("none yet: %q", out)
	})
	return ll
}
