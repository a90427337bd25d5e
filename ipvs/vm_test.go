//go:build linux && vm

package ipvs

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// These tests run as root inside the VM (make test-vm), each in fresh
// network namespaces, against the real IPVS of Debian's kernel.

func applyOK(t *testing.T, h *Handle, want []Service) Report {
	t.Helper()
	return mustApply(t, h, want)
}

func mhService(k Key, flags []string, ds ...Destination) Service {
	s := svc(k, "mh", ds...)
	s.Flags = flags
	return s
}

func TestVMCreateUpdateDelete(t *testing.T) {
	ns := newNetns(t)
	h, ck := openCounted(t, ns)
	web1 := mhService(web, []string{"mh-port"}, dst("10.0.2.21", 1), dst("10.0.2.22", 1), dst("10.0.2.23", 1))
	api1 := svc(api, "wlc", Destination{Address: netip.MustParseAddr("10.0.3.31"), Port: 8443, Weight: 2, Forwarding: Masquerade})
	api1.Persistence = 300 * time.Second
	rep := applyOK(t, h, []Service{web1, api1})
	if rep.Ops != 7 || ck.writes != 7 {
		t.Errorf("create: report %d ops, %d netlink writes; want 7 (mh bound after its destinations)", rep.Ops, ck.writes)
	}
	// ipvsadm -Ln sorts destinations; /proc/net/ip_vs has the kernel order.
	want := map[string]ipvsadmService{
		"198.18.0.10:80":  {Header: "TCP 198.18.0.10:80 mh (mh-port)", Dests: []string{"10.0.2.21:80 Route 1", "10.0.2.22:80 Route 1", "10.0.2.23:80 Route 1"}},
		"198.18.0.11:443": {Header: "TCP 198.18.0.11:443 wlc persistent 300", Dests: []string{"10.0.3.31:8443 Masq 2"}},
	}
	if diff := cmp.Diff(want, ipvsadmList(t, ns)); diff != "" {
		t.Fatalf("ipvsadm -Ln after create (-want +got):\n%s", diff)
	}
	wantOrder := map[string][]string{
		"198.18.0.10:80":  {"10.0.2.23:80 Route 1", "10.0.2.22:80 Route 1", "10.0.2.21:80 Route 1"},
		"198.18.0.11:443": {"10.0.3.31:8443 Masq 2"},
	}
	if diff := cmp.Diff(wantOrder, procList(t, ns)); diff != "" {
		t.Fatalf("/proc/net/ip_vs after create (-want +got):\n%s", diff)
	}

	web2 := mhService(web, []string{"mh-port", "mh-fallback"}, dst("10.0.2.21", 1), dst("10.0.2.22", 3), dst("10.0.2.23", 1))
	web2.Destinations[0].Forwarding = Tunnel
	api2 := svc(api, "rr", api1.Destinations...)
	before := ck.writes
	rep = applyOK(t, h, []Service{web2, api2})
	if rep.Ops != 4 || ck.writes-before != 4 {
		t.Errorf("update: report %d ops, %d netlink writes; want 4 (2 services, 2 destinations, in place)", rep.Ops, ck.writes-before)
	}
	want = map[string]ipvsadmService{
		"198.18.0.10:80":  {Header: "TCP 198.18.0.10:80 mh (mh-fallback,mh-port)", Dests: []string{"10.0.2.21:80 Tunnel 1", "10.0.2.22:80 Route 3", "10.0.2.23:80 Route 1"}},
		"198.18.0.11:443": {Header: "TCP 198.18.0.11:443 rr", Dests: []string{"10.0.3.31:8443 Masq 2"}},
	}
	if diff := cmp.Diff(want, ipvsadmList(t, ns)); diff != "" {
		t.Fatalf("ipvsadm -Ln after update (-want +got):\n%s", diff)
	}
	wantOrder["198.18.0.10:80"] = []string{"10.0.2.23:80 Route 1", "10.0.2.22:80 Route 3", "10.0.2.21:80 Tunnel 1"}
	if diff := cmp.Diff(wantOrder, procList(t, ns)); diff != "" {
		t.Fatalf("/proc/net/ip_vs after update (-want +got):\n%s", diff)
	}
	// A fresh handle reads everything back equal: nothing to plan.
	h2, _ := openCounted(t, ns)
	if ops, err := h2.Plan(context.Background(), []Service{web2, api2}); err != nil || len(ops) != 0 {
		t.Errorf("read back: plan %v, err %v; want no ops", opLines(ops), err)
	}

	applyOK(t, h, []Service{api2})
	if got := ipvsadmList(t, ns); len(got) != 1 || got["198.18.0.11:443"].Header == "" {
		t.Errorf("after dropping web: %v", got)
	}
	applyOK(t, h, nil)
	if got := ipvsadmList(t, ns); len(got) != 0 {
		t.Errorf("after dropping everything: %v", got)
	}
}

func TestVMIdempotent(t *testing.T) {
	ns := newNetns(t)
	v6 := Key{VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Protocol: 6}
	udp := Key{VIP: netip.MustParseAddr("198.18.0.12"), Port: 53, Protocol: 17}
	persistent := svc(api, "sh", dst("10.0.2.31", 1), dst("10.0.2.32", 2))
	persistent.Flags = []string{"sh-port"}
	persistent.Persistence = time.Minute
	dns := svc(udp, "rr", dst("10.0.2.41", 1))
	dns.Flags = []string{"ops"}
	want := []Service{
		mhService(web, []string{"mh-port", "mh-fallback"}, dst("10.0.2.21", 1), dst("10.0.2.22", 1), dst("10.0.2.23", 2)),
		persistent, dns,
		svc(v6, "mh", Destination{Address: netip.MustParseAddr("2001:db8::21"), Port: 443, Weight: 1, Forwarding: Masquerade}),
	}
	h, ck := openCounted(t, ns)
	applyOK(t, h, want)
	first := ck.writes
	rep := applyOK(t, h, want)
	if rep.Ops != 0 || ck.writes != first {
		t.Errorf("second Apply: %d ops, %d netlink writes; want none", rep.Ops, ck.writes-first)
	}
	// A restarted daemon (new handle, full read) adopts it all without writes.
	h2, ck2 := openCounted(t, ns, WithResyncInterval(0))
	for i := range 2 {
		rep = applyOK(t, h2, want)
		if !rep.FullRead || rep.Ops != 0 || ck2.writes != 0 {
			t.Errorf("adopting Apply %d: full read %v, %d ops, %d netlink writes; want a full read and no writes", i, rep.FullRead, rep.Ops, ck2.writes)
		}
		if ck2.reads == 0 {
			t.Error("adopting Apply read nothing from the kernel")
		}
	}
}

func TestVMSchedulerFlagsReadBack(t *testing.T) {
	ns := newNetns(t)
	k := func(port uint16) Key { return Key{VIP: web.VIP, Port: port, Protocol: 6} }
	shBoth := svc(k(82), "sh", dst("10.0.2.21", 1))
	shBoth.Flags = []string{"sh-fallback", "sh-port"}
	wlc := svc(k(83), "wlc", dst("10.0.2.21", 1))
	wlc.Persistence = 90 * time.Second
	want := []Service{
		mhService(k(80), []string{"mh-port", "mh-fallback"}, dst("10.0.2.21", 1)),
		mhService(k(81), []string{"mh-port"}, dst("10.0.2.21", 1)),
		shBoth, wlc,
	}
	h, _ := openCounted(t, ns)
	applyOK(t, h, want)

	h2, _ := openCounted(t, ns)
	keys := map[Key]bool{}
	for _, s := range want {
		keys[s.Key] = true
	}
	have, _, failed, err := h2.read(func(k Key) bool { return keys[k] })
	if err != nil || len(failed) > 0 {
		t.Fatalf("read: %v %v", err, failed)
	}
	var got, exp []Service
	for _, s := range have {
		got = append(got, header(s))
	}
	for _, s := range want {
		exp = append(exp, header(s))
	}
	if diff := cmp.Diff(exp, got, netipComparers()...); diff != "" {
		t.Errorf("services read back from the kernel (-want +got):\n%s", diff)
	}
	wantHeaders := map[string]string{
		"198.18.0.10:80": "TCP 198.18.0.10:80 mh (mh-fallback,mh-port)",
		"198.18.0.10:81": "TCP 198.18.0.10:81 mh (mh-port)",
		"198.18.0.10:82": "TCP 198.18.0.10:82 sh (sh-fallback,sh-port)",
		"198.18.0.10:83": "TCP 198.18.0.10:83 wlc persistent 90",
	}
	gotHeaders := map[string]string{}
	for a, s := range ipvsadmList(t, ns) {
		gotHeaders[a] = s.Header
	}
	if diff := cmp.Diff(wantHeaders, gotHeaders); diff != "" {
		t.Errorf("ipvsadm -Ln headers (-want +got):\n%s", diff)
	}
}

func TestVMIPv6(t *testing.T) {
	ns := newNetns(t)
	k := Key{VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Protocol: 6}
	d := func(a string, w int) Destination {
		return Destination{Address: netip.MustParseAddr(a), Port: 443, Weight: w, Forwarding: DirectRoute}
	}
	h, _ := openCounted(t, ns)
	rep := applyOK(t, h, []Service{mhService(k, []string{"mh-port"}, d("2001:db8::21", 1), d("2001:db8::23", 1), d("2001:db8::22", 2))})
	want := ipvsadmService{Header: "TCP [2001:db8::10]:443 mh (mh-port)", Dests: []string{"[2001:db8::21]:443 Route 1", "[2001:db8::22]:443 Route 2", "[2001:db8::23]:443 Route 1"}}
	if diff := cmp.Diff(want, ipvsadmList(t, ns)["[2001:db8::10]:443"]); diff != "" {
		t.Errorf("ipvsadm -Ln (-want +got):\n%s", diff)
	}
	wantOrder := []string{"[2001:db8::23]:443 Route 1", "[2001:db8::22]:443 Route 2", "[2001:db8::21]:443 Route 1"}
	if diff := cmp.Diff(wantOrder, procList(t, ns)["[2001:db8::10]:443"]); diff != "" {
		t.Errorf("/proc/net/ip_vs order (-want +got):\n%s", diff)
	}
	if rep.Fingerprint[k] == "" {
		t.Error("no fingerprint for the IPv6 service")
	}
	rep = applyOK(t, h, []Service{mhService(k, []string{"mh-port"}, d("2001:db8::21", 1), d("2001:db8::22", 2))})
	if rep.Ops != 1 {
		t.Errorf("removing one IPv6 destination took %d writes", rep.Ops)
	}
	applyOK(t, h, nil)
	if got := ipvsadmList(t, ns); len(got) != 0 {
		t.Errorf("IPv6 service left behind: %v", got)
	}
}

func TestVMForeignServiceUntouched(t *testing.T) {
	ns := newNetns(t)
	ns.exec(t, "ipvsadm", "-A", "-u", "192.0.2.1:53", "-s", "rr")
	ns.exec(t, "ipvsadm", "-a", "-u", "192.0.2.1:53", "-r", "10.9.9.8:53", "-m", "-w", "1")
	ns.exec(t, "ipvsadm", "-a", "-u", "192.0.2.1:53", "-r", "10.9.9.9:53", "-m", "-w", "7")
	// Not in canonical order and not owned: must stay exactly so.
	foreign := ipvsadmList(t, ns)["192.0.2.1:53"]
	if len(foreign.Dests) != 2 {
		t.Fatalf("foreign service set-up: %+v", foreign)
	}
	h, ck := openCounted(t, ns, WithResyncInterval(0))
	applyOK(t, h, []Service{svc(web, "mh", dst("10.0.2.21", 1))})
	applyOK(t, h, []Service{svc(api, "mh", dst("10.0.2.21", 1))})
	applyOK(t, h, nil)
	got := ipvsadmList(t, ns)
	if diff := cmp.Diff(map[string]ipvsadmService{"192.0.2.1:53": foreign}, got); diff != "" {
		t.Errorf("after owning, changing and dropping other services (-want +got):\n%s", diff)
	}
	if ck.writes != 6 {
		t.Errorf("%d writes, want 6 (create and delete two services, two destinations)", ck.writes)
	}
}

// TestVMCanonicalOrderAcrossHistories drives two namespaces through different
// backend histories to the same set and checks that the kernel lists (and so
// the mh tables) end up identical, while ipvsadm, adding the same set in two
// orders, produces two different lists.
func TestVMCanonicalOrderAcrossHistories(t *testing.T) {
	a, b, plain1, plain2 := newNetns(t), newNetns(t), newNetns(t), newNetns(t)
	d := func(last string) Destination { return dst("10.0.2."+last, 1) }
	final := []Destination{d("24"), d("21"), d("25"), d("23"), d("22")}
	final[2].Weight = 2
	histA := [][]Destination{{d("21"), d("22")}, {d("21"), d("22"), d("23")}, final}
	histB := [][]Destination{{d("25")}, {d("23"), d("25"), d("24")}, {d("22"), d("24")}, final}

	fingerprint := func(ns netns, hist [][]Destination) string {
		h, _ := openCounted(t, ns)
		var rep Report
		for _, set := range hist {
			rep = applyOK(t, h, []Service{mhService(web, []string{"mh-port"}, set...)})
		}
		return rep.Fingerprint[web]
	}
	fpA, fpB := fingerprint(a, histA), fingerprint(b, histB)
	if fpA == "" || fpA != fpB {
		t.Errorf("fingerprints differ: %s vs %s", fpA, fpB)
	}
	listA, listB := procList(t, a)["198.18.0.10:80"], procList(t, b)["198.18.0.10:80"]
	wantOrder := []string{"10.0.2.25:80 Route 2", "10.0.2.24:80 Route 1", "10.0.2.23:80 Route 1", "10.0.2.22:80 Route 1", "10.0.2.21:80 Route 1"}
	if diff := cmp.Diff(wantOrder, listA); diff != "" {
		t.Errorf("namespace A kernel order (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(listA, listB); diff != "" {
		t.Errorf("namespaces A and B kernel orders differ (-A +B):\n%s", diff)
	}
	// ipvsadm -Ln sorts destinations, so it shows the same list for any order.
	if a, b := ipvsadmList(t, a)["198.18.0.10:80"], ipvsadmList(t, b)["198.18.0.10:80"]; !cmp.Equal(a, b) {
		t.Errorf("ipvsadm -Ln differs: %v vs %v", a, b)
	}
	t.Logf("fingerprint %s, kernel order %v", fpA, listA)

	// Control: the same set added in two orders with ipvsadm gives two lists,
	// which is the problem the canonical order solves. Adopting them makes
	// both canonical.
	for i, ns := range []netns{plain1, plain2} {
		ns.exec(t, "ipvsadm", "-A", "-t", "198.18.0.10:80", "-s", "mh", "-b", "mh-port")
		order := []string{"21", "22", "23", "24", "25"}
		if i == 1 {
			slices.Reverse(order)
		}
		for _, last := range order {
			w := "1"
			if last == "25" {
				w = "2"
			}
			ns.exec(t, "ipvsadm", "-a", "-t", "198.18.0.10:80", "-r", "10.0.2."+last+":80", "-g", "-w", w)
		}
	}
	p1, p2 := procList(t, plain1)["198.18.0.10:80"], procList(t, plain2)["198.18.0.10:80"]
	if cmp.Equal(p1, p2) {
		t.Errorf("ipvsadm in two orders gave the same kernel list %v: the kernel no longer inserts at the head?", p1)
	}
	t.Logf("ipvsadm-made kernel orders: %v and %v", p1, p2)
	for _, ns := range []netns{plain1, plain2} {
		h, _ := openCounted(t, ns)
		rep := applyOK(t, h, []Service{mhService(web, []string{"mh-port"}, final...)})
		if rep.Fingerprint[web] != fpA {
			t.Errorf("adopted ipvsadm service: fingerprint %s, want %s", rep.Fingerprint[web], fpA)
		}
		if got := procList(t, ns)["198.18.0.10:80"]; !cmp.Equal(got, wantOrder) {
			t.Errorf("adopted ipvsadm service order %v, want %v", got, wantOrder)
		}
	}
}

// TestVMConnectionSurvives follows one real TCP connection through a daemon
// restart (adoption), a canonical reorder that deletes and re-adds its
// destination, and a drain that holds the destination at weight 0 until the
// connection ends and then deletes it.
func TestVMConnectionSurvives(t *testing.T) {
	l := newTrafficLab(t)
	key := Key{VIP: netip.MustParseAddr(labVIP), Port: 80, Protocol: 6}
	be := func(a string, w int) Destination {
		return Destination{Address: netip.MustParseAddr(a), Port: labPort, Weight: w, Forwarding: Masquerade}
	}
	h1, _ := openCounted(t, l.director)
	if _, err := h1.SetSysctls(nil); err != nil {
		t.Fatalf("SetSysctls: %v", err)
	}
	only := []Service{mhService(key, []string{"mh-port", "mh-fallback"}, be(labBackendB, 1))}
	applyOK(t, h1, only)
	c := l.dial(t)
	if got := c.echo(t, "hello"); got != labBackendB {
		t.Fatalf("connection went to %s, want %s", got, labBackendB)
	}
	stats := func(h *Handle) ServiceStats {
		t.Helper()
		st, err := h.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st[key]
	}
	// Totals are folded in by the kernel's estimator every 2 s.
	waitStats := func(h *Handle, ok func(ServiceStats) bool) ServiceStats {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			st := stats(h)
			if ok(st) {
				return st
			}
			if time.Now().After(deadline) {
				t.Fatalf("stats never reached the expected values: %+v", st)
			}
			time.Sleep(250 * time.Millisecond)
		}
	}
	waitStats(h1, func(st ServiceStats) bool {
		return st.Stats.Connections == 1 && st.Stats.ActiveConns == 1 && st.Stats.PacketsIn >= 3 &&
			len(st.Destinations) == 1 && st.Destinations[0].Stats.Connections == 1 && st.Destinations[0].Stats.BytesOut > 0
	})

	// 1. Restart: a new handle adopts the service; nothing is written, the
	// connection carries on and the service counters are not reset (a
	// re-created service would start from zero).
	h1.Close()
	h2, ck2 := openCounted(t, l.director)
	if rep := applyOK(t, h2, only); rep.Ops != 0 || ck2.writes != 0 {
		t.Fatalf("adoption wrote %d times", ck2.writes)
	}
	c.echo(t, "after restart")
	// A re-created service would count from zero.
	waitStats(h2, func(st ServiceStats) bool { return st.Stats.Connections == 1 && st.Stats.PacketsIn >= 5 })

	// 2. A lower address joins: the canonical order needs the existing
	// destination re-inserted (delete + add). The kernel's trash hands it
	// back with its connection.
	both := []Service{mhService(key, []string{"mh-port", "mh-fallback"}, be(labBackendA, 1), be(labBackendB, 1))}
	rep := applyOK(t, h2, both)
	if rep.Ops != 3 {
		t.Errorf("join took %d writes, want 3 (add, delete, re-add)", rep.Ops)
	}
	if got := procList(t, l.director)[labVIP+":80"]; !slices.Equal(got, []string{labBackendB + ":8080 Masq 1", labBackendA + ":8080 Masq 1"}) {
		t.Errorf("order after join: %v", got)
	}
	if got := c.echo(t, "after reorder"); got != labBackendB {
		t.Errorf("after reorder the connection reached %s", got)
	}
	if st := stats(h2); st.Destinations[0].Stats.ActiveConns != 1 {
		t.Errorf("re-added destination lost its connection: %+v", st.Destinations)
	}

	// 3. Drain B: weight 0 while the connection lasts, deleted after.
	drain := []Service{mhService(key, []string{"mh-port", "mh-fallback"}, be(labBackendA, 1), draining(be(labBackendB, 1)))}
	applyOK(t, h2, drain)
	if rep := applyOK(t, h2, drain); rep.Ops != 0 {
		t.Errorf("held drain wrote %d times", rep.Ops)
	}
	if got := procList(t, l.director)[labVIP+":80"]; !slices.Equal(got, []string{labBackendB + ":8080 Masq 0", labBackendA + ":8080 Masq 1"}) {
		t.Errorf("draining: %v", got)
	}
	c.echo(t, "while draining")
	c2 := l.dial(t)
	if got := c2.echo(t, "new"); got != labBackendA {
		t.Errorf("a new connection during the drain went to %s", got)
	}
	c2.reset()
	c.reset()
	deadline := time.Now().Add(45 * time.Second)
	for {
		applyOK(t, h2, drain)
		if got := procList(t, l.director)[labVIP+":80"]; slices.Equal(got, []string{labBackendA + ":8080 Masq 1"}) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("drained destination not deleted after its connection ended: %v", stats(h2).Destinations)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

func TestVMSysctls(t *testing.T) {
	ns := newNetns(t)
	h, _ := openCounted(t, ns)
	root := readRootSysctl(t, "sloppy_tcp")
	got, err := h.SetSysctls(map[string]int{"nat_icmp_send": 1})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(got, h.Sysctls()); diff != "" {
		t.Errorf("read back (-set +read):\n%s", diff)
	}
	for name, v := range map[string]string{"sloppy_tcp": "1", "expire_nodest_conn": "0", "conn_reuse_mode": "3", "schedule_icmp": "1"} {
		if out := strings.TrimSpace(ns.exec(t, "cat", "/proc/sys/net/ipv4/vs/"+name)); out != v {
			t.Errorf("%s in the namespace = %s, want %s", name, out, v)
		}
	}
	if after := readRootSysctl(t, "sloppy_tcp"); after != root {
		t.Errorf("the root namespace's sloppy_tcp changed from %s to %s", root, after)
	}
}

func readRootSysctl(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("/proc/sys/net/ipv4/vs/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestVMProcAndNetlinkReadsAgree checks the fast full read (/proc/net/ip_vs)
// against one netlink dump per service on a varied state, including a
// foreign firewall-mark service and connection counts.
func TestVMProcAndNetlinkReadsAgree(t *testing.T) {
	l := newTrafficLab(t)
	ns := l.director
	v6 := Key{VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Protocol: 6}
	udp := Key{VIP: netip.MustParseAddr("198.18.0.12"), Port: 53, Protocol: 17}
	key := Key{VIP: netip.MustParseAddr(labVIP), Port: 80, Protocol: 6}
	persistent := svc(api, "wlc", dst("10.0.2.31", 3))
	persistent.Persistence = time.Minute
	want := []Service{
		mhService(key, []string{"mh-port", "mh-fallback"}, Destination{Address: netip.MustParseAddr(labBackendA), Port: labPort, Weight: 1, Forwarding: Masquerade}),
		mhService(web, []string{"mh-port"}, dst("10.0.2.21", 1), dst("10.0.2.22", 0), dst("10.0.2.23", 65535)),
		persistent,
		svc(udp, "rr", Destination{Address: netip.MustParseAddr("10.0.2.41"), Port: 5353, Weight: 1, Forwarding: Tunnel}),
		svc(v6, "mh", Destination{Address: netip.MustParseAddr("2001:db8::21"), Port: 443, Weight: 2, Forwarding: DirectRoute}),
	}
	h, _ := openCounted(t, ns)
	if h.proc == nil {
		t.Fatal("the handle did not open /proc/net/ip_vs")
	}
	applyOK(t, h, want)
	ns.exec(t, "ipvsadm", "-A", "-f", "7", "-s", "rr")
	ns.exec(t, "ipvsadm", "-a", "-f", "7", "-r", "10.9.9.9", "-g")
	c := l.dial(t)
	c.echo(t, "counted")

	all := func(Key) bool { return true }
	viaProc, procReads, failed, err := h.read(all)
	if err != nil || len(failed) > 0 {
		t.Fatalf("read via /proc: %v %v", err, failed)
	}
	proc := h.proc
	h.proc = nil
	viaNetlink, nlReads, failed, err := h.read(all)
	h.proc = proc
	if err != nil || len(failed) > 0 {
		t.Fatalf("read via netlink: %v %v", err, failed)
	}
	// /proc has connection counts but no packet counters.
	for i := range viaNetlink {
		for j := range viaNetlink[i].Destinations {
			st := &viaNetlink[i].Destinations[j].Stats
			*st = Stats{ActiveConns: st.ActiveConns, InactiveConns: st.InactiveConns}
		}
	}
	if diff := cmp.Diff(viaNetlink, viaProc, netipComparers()...); diff != "" {
		t.Errorf("reads differ (-netlink +proc):\n%s", diff)
	}
	if len(viaProc) != len(want) || viaProc[0].Destinations[0].Stats.ActiveConns != 1 {
		t.Errorf("read %d services, first %+v; want %d and one active connection", len(viaProc), viaProc[0], len(want))
	}
	if procReads != 2 || nlReads != 1+len(want) {
		t.Errorf("requests: /proc path %d, netlink path %d; want 2 and %d", procReads, nlReads, 1+len(want))
	}
}

// TestVMProcListingSkipsWithOtherNamespaces documents the kernel's
// incomplete /proc/net/ip_vs listing when two namespaces have services, and
// checks that the full read still sees everything (netlink fills the gaps).
func TestVMProcListingSkipsWithOtherNamespaces(t *testing.T) {
	a, b := newNetns(t), newNetns(t)
	want := scaleState(400, 2)
	for _, ns := range []netns{a, b} {
		h, _ := openCounted(t, ns)
		applyOK(t, h, want)
	}
	listed := len(procList(t, a))
	t.Logf("/proc/net/ip_vs in one of two namespaces with %d services each lists %d", len(want), listed)
	h, ck := openCounted(t, a, WithResyncInterval(0))
	reads := ck.reads
	rep := applyOK(t, h, want)
	if rep.Ops != 0 || len(rep.Fingerprint) != len(want) {
		t.Fatalf("full read of %d services: %d ops, %d fingerprints; want 0 and %d", len(want), rep.Ops, len(rep.Fingerprint), len(want))
	}
	if got := ck.reads - reads; got != 1+len(want)-listed {
		t.Errorf("netlink reads %d, want %d (the service dump plus the services missing from /proc)", got, 1+len(want)-listed)
	}
	if listed == len(want) {
		t.Logf("this kernel listed every service: the fallback was not needed")
	}
}

// TestVMSameRealServerAcrossHistories is what the canonical order is for:
// two directors that reached the same backends through different histories
// send a flow they never saw to the same real server (same mh table), while
// a director whose list is in another order (ipvsadm, reverse insertion)
// sends some flows elsewhere. Each director schedules 512 local connections
// from fixed source ports (mh-port hashes the port too); the SYNs go nowhere,
// but the kernel's connection table (ipvsadm -Lnc) records the choice.
func TestVMSameRealServerAcrossHistories(t *testing.T) {
	d := func(last string) Destination { return dst("10.0.2."+last, 1) }
	set := []Destination{d("21"), d("22"), d("23"), d("24"), d("25")}
	set[3].Weight = 2
	setup := func(ns netns) {
		ns.ip(t, "link", "add", "v0", "type", "veth", "peer", "name", "v1")
		ns.ip(t, "addr", "add", "10.0.2.1/24", "dev", "v0")
		ns.ip(t, "link", "set", "v0", "up")
		ns.ip(t, "link", "set", "v1", "up")
		ns.ip(t, "addr", "add", "198.18.0.10/32", "dev", "lo")
	}
	a, b, c := newNetns(t), newNetns(t), newNetns(t)
	for _, ns := range []netns{a, b, c} {
		setup(ns)
	}
	hists := map[netns][][]Destination{
		a: {{d("21"), d("22")}, set},
		b: {{d("25")}, {d("24"), d("23")}, {d("21"), d("23"), d("24"), d("25")}, set},
	}
	var fps []string
	for _, ns := range []netns{a, b} {
		h, _ := openCounted(t, ns)
		var rep Report
		for _, s := range hists[ns] {
			rep = applyOK(t, h, []Service{mhService(web, []string{"mh-port"}, s...)})
		}
		fps = append(fps, rep.Fingerprint[web])
	}
	if fps[0] != fps[1] {
		t.Fatalf("fingerprints differ: %v", fps)
	}
	c.exec(t, "ipvsadm", "-A", "-t", "198.18.0.10:80", "-s", "mh", "-b", "mh-port")
	for _, last := range []string{"25", "24", "23", "22", "21"} { // reverse of Apply's order
		w := "1"
		if last == "24" {
			w = "2"
		}
		c.exec(t, "ipvsadm", "-a", "-t", "198.18.0.10:80", "-r", "10.0.2."+last+":80", "-g", "-w", w)
	}

	const flows = 512
	choices := func(ns netns) map[string]string {
		var fds []int
		err := inNetns(ns.path, func() error {
			for p := range flows {
				fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					return err
				}
				fds = append(fds, fd)
				if err := unix.Bind(fd, &unix.SockaddrInet4{Port: 40000 + p}); err != nil {
					return err
				}
				err = unix.Connect(fd, &unix.SockaddrInet4{Addr: [4]byte{198, 18, 0, 10}, Port: 80})
				if err != nil && !errors.Is(err, unix.EINPROGRESS) {
					return err
				}
			}
			return nil
		})
		defer func() {
			for _, fd := range fds {
				unix.Close(fd)
			}
		}()
		if err != nil {
			t.Fatalf("connect from %s: %v", ns.name, err)
		}
		got := map[string]string{}
		for _, line := range strings.Split(ns.exec(t, "ipvsadm", "-Lnc"), "\n") {
			f := strings.Fields(line)
			if len(f) == 6 && f[0] == "TCP" && f[4] == "198.18.0.10:80" {
				got[f[3]] = f[5]
			}
		}
		if len(got) != flows {
			t.Fatalf("%s: %d scheduled connections, want %d", ns.name, len(got), flows)
		}
		return got
	}
	ca, cb, cc := choices(a), choices(b), choices(c)
	if diff := cmp.Diff(ca, cb); diff != "" {
		t.Errorf("directors with equal fingerprints chose different real servers (-A +B):\n%s", diff)
	}
	moved := 0
	for src, dest := range ca {
		if cc[src] != dest {
			moved++
		}
	}
	spread := map[string]int{}
	for _, dest := range ca {
		spread[dest]++
	}
	t.Logf("%d flows spread %v: canonical directors agree on all; a director with the reverse order disagrees on %d", flows, spread, moved)
	if moved == 0 {
		t.Errorf("the reverse-order director chose like the canonical ones for all %d flows: the test no longer shows that order matters", flows)
	}
}
