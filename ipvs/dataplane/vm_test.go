//go:build linux && vm

package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/ipvs"
)

// These tests run as root inside the VM (make test-vm), each in fresh
// network namespaces, against the real IPVS of Debian's kernel.

func applyOK(t *testing.T, h *Handle, want []ipvs.Service) Report {
	t.Helper()
	return mustApply(t, h, want)
}

func mhService(k ipvs.Key, flags []string, ds ...ipvs.Destination) ipvs.Service {
	s := svc(k, "mh", ds...)
	s.Flags = flags
	return s
}

func TestVMCreateUpdateDelete(t *testing.T) {
	ns := newNetns(t)
	h, ck := openCounted(t, ns)
	web1 := mhService(web, []string{"mh-port"}, dst("10.0.2.21", 1), dst("10.0.2.22", 1), dst("10.0.2.23", 1))
	api1 := svc(api, "wlc", ipvs.Destination{Address: netip.MustParseAddr("10.0.3.31"), Port: 8443, Weight: 2, Forwarding: ipvs.Masquerade})
	api1.Persistence = 300 * time.Second
	rep := applyOK(t, h, []ipvs.Service{web1, api1})
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
	web2.Destinations[0].Forwarding = ipvs.Tunnel
	api2 := svc(api, "rr", api1.Destinations...)
	before := ck.writes
	rep = applyOK(t, h, []ipvs.Service{web2, api2})
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
	if ops, err := h2.Plan(context.Background(), []ipvs.Service{web2, api2}); err != nil || len(ops) != 0 {
		t.Errorf("read back: plan %v, err %v; want no ops", opLines(ops), err)
	}

	applyOK(t, h, []ipvs.Service{api2})
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
	v6 := ipvs.Key{VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Protocol: 6}
	udp := ipvs.Key{VIP: netip.MustParseAddr("198.18.0.12"), Port: 53, Protocol: 17}
	persistent := svc(api, "sh", dst("10.0.2.31", 1), dst("10.0.2.32", 2))
	persistent.Flags = []string{"sh-port"}
	persistent.Persistence = time.Minute
	dns := svc(udp, "rr", dst("10.0.2.41", 1))
	dns.Flags = []string{"ops"}
	want := []ipvs.Service{
		mhService(web, []string{"mh-port", "mh-fallback"}, dst("10.0.2.21", 1), dst("10.0.2.22", 1), dst("10.0.2.23", 2)),
		persistent, dns,
		svc(v6, "mh", ipvs.Destination{Address: netip.MustParseAddr("2001:db8::21"), Port: 443, Weight: 1, Forwarding: ipvs.Masquerade}),
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
	k := func(port uint16) ipvs.Key { return ipvs.Key{VIP: web.VIP, Port: port, Protocol: 6} }
	shBoth := svc(k(82), "sh", dst("10.0.2.21", 1))
	shBoth.Flags = []string{"sh-fallback", "sh-port"}
	wlc := svc(k(83), "wlc", dst("10.0.2.21", 1))
	wlc.Persistence = 90 * time.Second
	want := []ipvs.Service{
		mhService(k(80), []string{"mh-port", "mh-fallback"}, dst("10.0.2.21", 1)),
		mhService(k(81), []string{"mh-port"}, dst("10.0.2.21", 1)),
		shBoth, wlc,
	}
	h, _ := openCounted(t, ns)
	applyOK(t, h, want)

	h2, _ := openCounted(t, ns)
	keys := map[ipvs.Key]bool{}
	for _, s := range want {
		keys[s.Key] = true
	}
	have, _, failed, err := h2.read(t.Context(), func(k ipvs.Key) bool { return keys[k] })
	if err != nil || len(failed) > 0 {
		t.Fatalf("read: %v %v", err, failed)
	}
	var got, exp []ipvs.Service
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
	k := ipvs.Key{VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Protocol: 6}
	d := func(a string, w int) ipvs.Destination {
		return ipvs.Destination{Address: netip.MustParseAddr(a), Port: 443, Weight: w, Forwarding: ipvs.DirectRoute}
	}
	h, _ := openCounted(t, ns)
	rep := applyOK(t, h, []ipvs.Service{mhService(k, []string{"mh-port"}, d("2001:db8::21", 1), d("2001:db8::23", 1), d("2001:db8::22", 2))})
	want := ipvsadmService{Header: "TCP [2001:db8::10]:443 mh (mh-port)", Dests: []string{"[2001:db8::21]:443 Route 1", "[2001:db8::22]:443 Route 2", "[2001:db8::23]:443 Route 1"}}
	if diff := cmp.Diff(want, ipvsadmList(t, ns)["[2001:db8::10]:443"]); diff != "" {
		t.Errorf("ipvsadm -Ln (-want +got):\n%s", diff)
	}
	wantOrder := []string{"[2001:db8::23]:443 Route 1", "[2001:db8::22]:443 Route 2", "[2001:db8::21]:443 Route 1"}
	if diff := cmp.Diff(wantOrder, procList(t, ns)["[2001:db8::10]:443"]); diff != "" {
		t.Errorf("/proc/net/ip_vs order (-want +got):\n%s", diff)
	}
	if rep.Fingerprint.Get(k) == "" {
		t.Error("no fingerprint for the IPv6 service")
	}
	rep = applyOK(t, h, []ipvs.Service{mhService(k, []string{"mh-port"}, d("2001:db8::21", 1), d("2001:db8::22", 2))})
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
	applyOK(t, h, []ipvs.Service{svc(web, "mh", dst("10.0.2.21", 1))})
	applyOK(t, h, []ipvs.Service{svc(api, "mh", dst("10.0.2.21", 1))})
	applyOK(t, h, nil)
	got := ipvsadmList(t, ns)
	if diff := cmp.Diff(map[string]ipvsadmService{"192.0.2.1:53": foreign}, got); diff != "" {
		t.Errorf("after owning, changing and dropping other services (-want +got):\n%s", diff)
	}
	if ck.writes != 6 {
		t.Errorf("%d writes, want 6 (create and delete two services, two destinations)", ck.writes)
	}
}

func TestVMSysctls(t *testing.T) {
	ns := newNetns(t)
	h, _ := openCounted(t, ns)
	root := readRootSysctl(t, "sloppy_tcp")
	rep, err := h.Settings(context.Background(), ipvs.Settings{ManageSysctls: true, Sysctls: map[string]int{"nat_icmp_send": 1}})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sysctls["nat_icmp_send"] != 1 {
		t.Errorf("read back %v, want the override nat_icmp_send=1", rep.Sysctls)
	}
	if diff := cmp.Diff(rep.Sysctls, h.Sysctls()); diff != "" {
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

// TestVMBatchedWritesMeetDrift: one weight changed in 20 services goes to
// the kernel in one request; two of those writes meet a destination deleted
// by hand, the kernel's answers name them, and only those two services are
// read back and repaired in the same Apply.
func TestVMBatchedWritesMeetDrift(t *testing.T) {
	ns := newNetns(t)
	h, ck := openCounted(t, ns)
	services := func(w int) []ipvs.Service {
		out := make([]ipvs.Service, 20)
		for i := range out {
			k := ipvs.Key{VIP: netip.AddrFrom4([4]byte{198, 18, 1, byte(i + 1)}), Port: 80, Protocol: 6}
			out[i] = svc(k, "wrr", dst("10.0.2.21", w), dst("10.0.2.22", 1))
		}
		return out
	}
	applyOK(t, h, services(1))
	for _, vip := range []string{"198.18.1.4:80", "198.18.1.9:80"} {
		ns.exec(t, "ipvsadm", "-d", "-t", vip, "-r", "10.0.2.21:80")
	}
	ck.requests = nil
	rep := applyOK(t, h, services(2))
	if len(ck.requests) == 0 || ck.requests[0] != 20 {
		t.Errorf("requests carried %v writes, want the 20 weight changes in the first", ck.requests)
	}
	if rep.Reads != 2 {
		t.Errorf("%d services read back, want the 2 changed by hand", rep.Reads)
	}
	got := ipvsadmList(t, ns)
	for i := range 20 {
		vip := fmt.Sprintf("198.18.1.%d:80", i+1)
		if d := got[vip].Dests; !slices.Contains(d, "10.0.2.21:80 Route 2") {
			t.Errorf("%s after the Apply: %v, want 10.0.2.21 at weight 2", vip, d)
		}
	}
}
