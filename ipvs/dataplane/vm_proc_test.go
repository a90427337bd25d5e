//go:build linux && vm

package dataplane

import (
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/ipvs"
)

// TestVMProcAndNetlinkReadsAgree checks the fast full read (/proc/net/ip_vs)
// against one netlink dump per service on a varied state, including a
// foreign firewall-mark service and connection counts.
func TestVMProcAndNetlinkReadsAgree(t *testing.T) {
	l := newTrafficLab(t)
	ns := l.director
	v6 := ipvs.Key{VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Protocol: 6}
	udp := ipvs.Key{VIP: netip.MustParseAddr("198.18.0.12"), Port: 53, Protocol: 17}
	key := ipvs.Key{VIP: netip.MustParseAddr(labVIP), Port: 80, Protocol: 6}
	persistent := svc(api, "wlc", dst("10.0.2.31", 3))
	persistent.Persistence = time.Minute
	want := []ipvs.Service{
		mhService(key, []string{"mh-port", "mh-fallback"}, ipvs.Destination{Address: netip.MustParseAddr(labBackendA), Port: labPort, Weight: 1, Forwarding: ipvs.Masquerade}),
		mhService(web, []string{"mh-port"}, dst("10.0.2.21", 1), dst("10.0.2.22", 0), dst("10.0.2.23", 65535)),
		persistent,
		svc(udp, "rr", ipvs.Destination{Address: netip.MustParseAddr("10.0.2.41"), Port: 5353, Weight: 1, Forwarding: ipvs.Tunnel}),
		svc(v6, "mh", ipvs.Destination{Address: netip.MustParseAddr("2001:db8::21"), Port: 443, Weight: 2, Forwarding: ipvs.DirectRoute}),
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

	all := func(ipvs.Key) bool { return true }
	viaProc, procReads, failed, err := h.read(t.Context(), all)
	if err != nil || len(failed) > 0 {
		t.Fatalf("read via /proc: %v %v", err, failed)
	}
	proc := h.proc
	h.proc = nil
	viaNetlink, nlReads, failed, err := h.read(t.Context(), all)
	h.proc = proc
	if err != nil || len(failed) > 0 {
		t.Fatalf("read via netlink: %v %v", err, failed)
	}
	if diff := cmp.Diff(viaNetlink, viaProc, netipComparers()...); diff != "" {
		t.Errorf("reads differ (-netlink +proc):\n%s", diff)
	}
	if len(viaProc) != len(want) || viaProc[0].Destinations[0].Conns.Active != 1 {
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
	if rep.Ops != 0 || rep.Fingerprint.Len() != len(want) {
		t.Fatalf("full read of %d services: %d ops, %d fingerprints; want 0 and %d", len(want), rep.Ops, rep.Fingerprint.Len(), len(want))
	}
	if got := ck.reads - reads; got != 1+len(want)-listed {
		t.Errorf("netlink reads %d, want %d (the service dump plus the services missing from /proc)", got, 1+len(want)-listed)
	}
	if listed == len(want) {
		t.Logf("this kernel listed every service: the fallback was not needed")
	}
}
