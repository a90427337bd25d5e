//go:build linux && vm

package dataplane

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/ipvs"
)

// Flow continuity against the real kernel: canonical order, the real server
// chosen for unseen flows, and one connection through restart, reorder and
// drain.

// TestVMCanonicalOrderAcrossHistories drives two namespaces through different
// backend histories to the same set and checks that the kernel lists (and so
// the mh tables) end up identical, while ipvsadm, adding the same set in two
// orders, produces two different lists.
func TestVMCanonicalOrderAcrossHistories(t *testing.T) {
	a, b, plain1, plain2 := newNetns(t), newNetns(t), newNetns(t), newNetns(t)
	d := func(last string) ipvs.Destination { return dst("10.0.2."+last, 1) }
	final := []ipvs.Destination{d("24"), d("21"), d("25"), d("23"), d("22")}
	final[2].Weight = 2
	histA := [][]ipvs.Destination{{d("21"), d("22")}, {d("21"), d("22"), d("23")}, final}
	histB := [][]ipvs.Destination{{d("25")}, {d("23"), d("25"), d("24")}, {d("22"), d("24")}, final}

	fingerprint := func(ns netns, hist [][]ipvs.Destination) string {
		h, _ := openCounted(t, ns)
		var rep Report
		for _, set := range hist {
			rep = applyOK(t, h, []ipvs.Service{mhService(web, []string{"mh-port"}, set...)})
		}
		return rep.Fingerprint.Get(web)
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
		rep := applyOK(t, h, []ipvs.Service{mhService(web, []string{"mh-port"}, final...)})
		if rep.Fingerprint.Get(web) != fpA {
			t.Errorf("adopted ipvsadm service: fingerprint %s, want %s", rep.Fingerprint.Get(web), fpA)
		}
		if got := procList(t, ns)["198.18.0.10:80"]; !cmp.Equal(got, wantOrder) {
			t.Errorf("adopted ipvsadm service order %v, want %v", got, wantOrder)
		}
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
	d := func(last string) ipvs.Destination { return dst("10.0.2."+last, 1) }
	set := []ipvs.Destination{d("21"), d("22"), d("23"), d("24"), d("25")}
	set[3].Weight = 2
	a, b, c := newSchedNetns(t), newSchedNetns(t), newSchedNetns(t)
	hists := map[netns][][]ipvs.Destination{
		a: {{d("21"), d("22")}, set},
		b: {{d("25")}, {d("24"), d("23")}, {d("21"), d("23"), d("24"), d("25")}, set},
	}
	var fps []string
	for _, ns := range []netns{a, b} {
		h, _ := openCounted(t, ns)
		var rep Report
		for _, s := range hists[ns] {
			rep = applyOK(t, h, []ipvs.Service{mhService(web, []string{"mh-port"}, s...)})
		}
		fps = append(fps, rep.Fingerprint.Get(web))
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
		got := scheduleLocal(t, ns, 40000, flows)
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

// TestVMConnectionSurvives follows one real TCP connection through a daemon
// restart (adoption), a canonical reorder that deletes and re-adds its
// destination, and a drain that holds the destination at weight 0 until the
// connection ends and then deletes it.
func TestVMConnectionSurvives(t *testing.T) {
	l := newTrafficLab(t)
	key := ipvs.Key{VIP: netip.MustParseAddr(labVIP), Port: 80, Protocol: 6}
	be := func(a string, w int) ipvs.Destination {
		return ipvs.Destination{Address: netip.MustParseAddr(a), Port: labPort, Weight: w, Forwarding: ipvs.Masquerade}
	}
	h1, _ := openCounted(t, l.director)
	if _, err := h1.Settings(context.Background(), ipvs.Settings{ManageSysctls: true}); err != nil {
		t.Fatalf("Settings: %v", err)
	}
	only := []ipvs.Service{mhService(key, []string{"mh-port", "mh-fallback"}, be(labBackendB, 1))}
	applyOK(t, h1, only)
	c := l.dial(t)
	if got := c.echo(t, "hello"); got != labBackendB {
		t.Fatalf("connection went to %s, want %s", got, labBackendB)
	}
	stats := func(h *Handle) ipvs.ServiceStats {
		t.Helper()
		st, err := h.Stats(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return st[key]
	}
	// Totals are folded in by the kernel's estimator every 2 s.
	waitStats := func(h *Handle, ok func(ipvs.ServiceStats) bool) ipvs.ServiceStats {
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
	waitStats(h1, func(st ipvs.ServiceStats) bool {
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
	waitStats(h2, func(st ipvs.ServiceStats) bool { return st.Stats.Connections == 1 && st.Stats.PacketsIn >= 5 })

	// 2. A lower address joins: the canonical order needs the existing
	// destination re-inserted (delete + add). The kernel's trash hands it
	// back with its connection.
	both := []ipvs.Service{mhService(key, []string{"mh-port", "mh-fallback"}, be(labBackendA, 1), be(labBackendB, 1))}
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
	drain := []ipvs.Service{mhService(key, []string{"mh-port", "mh-fallback"}, be(labBackendA, 1), draining(be(labBackendB, 1)))}
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

// TestVMDrainWithMHNeedsFallback shows why mh services want mh-fallback when
// backends drain: mh keeps a weight-0 destination's table slots (it sizes
// shares by the last non-zero weight), so without the fallback flag a new
// flow that hashes to a drained backend gets no real server at all.
func TestVMDrainWithMHNeedsFallback(t *testing.T) {
	ns := newSchedNetns(t)
	h, _ := openCounted(t, ns)
	set := []ipvs.Destination{dst("10.0.2.21", 1), dst("10.0.2.22", 1), dst("10.0.2.23", 1), dst("10.0.2.24", 1)}
	applyOK(t, h, []ipvs.Service{mhService(web, []string{"mh-port"}, set...)})
	set[1].Weight = 0 // 10.0.2.22 drained to weight 0
	applyOK(t, h, []ipvs.Service{mhService(web, []string{"mh-port"}, set...)})
	const flows = 256
	without := scheduleLocal(t, ns, 41000, flows)
	applyOK(t, h, []ipvs.Service{mhService(web, []string{"mh-port", "mh-fallback"}, set...)})
	with := scheduleLocal(t, ns, 42000, flows)
	for name, got := range map[string]map[string]string{"without mh-fallback": without, "with mh-fallback": with} {
		for src, dest := range got {
			if dest == "10.0.2.22:80" {
				t.Errorf("%s: new flow %s went to the drained backend", name, src)
			}
		}
	}
	t.Logf("one of 4 backends at weight 0: %d of %d new flows found no real server without mh-fallback, %d with it", flows-len(without), flows, flows-len(with))
	if len(without) == flows {
		t.Errorf("without mh-fallback every flow found a real server: the kernel no longer keeps a drained destination's slots?")
	}
	if len(with) != flows {
		t.Errorf("with mh-fallback %d of %d flows found no real server", flows-len(with), flows)
	}
}
