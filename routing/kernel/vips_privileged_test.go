//go:build linux && privileged

package kernel

import (
	"context"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedVIPsOnLo runs VIPs against this host's kernel in a fresh
// namespace: full-set changes on lo for both families, an operator's addresses
// untouched, adoption by a new value after a "restart".
func TestPrivilegedVIPsOnLo(t *testing.T) {
	ns := netlab.New(t).Namespace("vips")
	path := nsPath(ns)
	// As in a fresh namespace: lo down.
	ns.MustRun("ip", "link", "set", "lo", "down")
	// The operator's own addresses: one on lo, one IPv6 with nodad like ours.
	ns.MustRun("ip", "addr", "add", "192.0.2.5/32", "dev", "lo")
	ns.MustRun("ip", "-6", "addr", "add", "2001:db8:ffff::5/128", "dev", "lo", "nodad")
	operator := []string{"127.0.0.1/8", "192.0.2.5/32", "2001:db8:ffff::5/128 nodad", "::1/128"}
	ctx := context.Background()

	if linkUp(t, ns, "lo") {
		t.Fatal("lo of a fresh namespace is expected down before NewVIPs")
	}
	v, err := NewVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto, Namespace: path})
	if err != nil {
		t.Fatalf("NewVIPs: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	if !linkUp(t, ns, "lo") {
		t.Error("NewVIPs did not bring lo up")
	}

	steps := []struct {
		name string
		set  []netip.Addr
		ours []string
	}{
		{"bind IPv4 and IPv6", addrs("198.18.0.10", "198.18.0.11", "2001:db8::10"),
			[]string{"198.18.0.10/32 label lo:vip", "198.18.0.11/32 label lo:vip", "2001:db8::10/128 nodad"}},
		{"replace", addrs("198.18.0.11", "2001:db8::10", "2001:db8::11"),
			[]string{"198.18.0.11/32 label lo:vip", "2001:db8::10/128 nodad", "2001:db8::11/128 nodad"}},
		{"a VIP the operator already bound stays foreign", addrs("192.0.2.5", "2001:db8::11"),
			[]string{"2001:db8::11/128 nodad"}},
		{"empty set", nil, nil},
	}
	for _, st := range steps {
		if err := v.Set(ctx, st.set); err != nil {
			t.Fatalf("%s: Set: %v", st.name, err)
		}
		want := append(append([]string{}, operator...), st.ours...)
		if diff := cmp.Diff(sorted(want), addrsOf(t, ns, "lo")); diff != "" {
			t.Errorf("%s: addresses on lo (-want +got):\n%s", st.name, diff)
		}
	}

	// Restart: bind, drop the value, and let a new one adopt the addresses.
	if err := v.Set(ctx, addrs("198.18.0.20", "198.18.0.21", "2001:db8::20")); err != nil {
		t.Fatal(err)
	}
	v.Close()
	v2, err := NewVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto, Namespace: path})
	if err != nil {
		t.Fatalf("NewVIPs after restart: %v", err)
	}
	t.Cleanup(func() { v2.Close() })
	owned, err := v2.Owned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"198.18.0.20", "198.18.0.21", "2001:db8::20"}, strs(owned)); diff != "" {
		t.Errorf("adopted after restart (-want +got):\n%s", diff)
	}
	if err := v2.Set(ctx, addrs("198.18.0.21")); err != nil {
		t.Fatal(err)
	}
	want := append(append([]string{}, operator...), "198.18.0.21/32 label lo:vip")
	if diff := cmp.Diff(sorted(want), addrsOf(t, ns, "lo")); diff != "" {
		t.Errorf("after adoption: addresses on lo (-want +got):\n%s", diff)
	}
	// A value with another protocol number owns none of them.
	other, err := NewVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto + 1, Namespace: path})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	if err := other.Set(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(sorted(want), addrsOf(t, ns, "lo")); diff != "" {
		t.Errorf("another protocol number removed addresses (-want +got):\n%s", diff)
	}
}

// TestPrivilegedVIPsDummyInterface checks what a VIP interface that does not
// exist turns into on this kernel: a dummy device where the kernel has the
// dummy link type, a clear error where it has not (this machine's kernel).
func TestPrivilegedVIPsDummyInterface(t *testing.T) {
	ns := netlab.New(t).Namespace("dummy")
	path := nsPath(ns)
	_, probeErr := ns.Run("ip", "link", "add", "probe0", "type", "dummy")
	hasDummy := probeErr == nil
	if hasDummy {
		ns.MustRun("ip", "link", "del", "probe0")
	}
	t.Logf("kernel has the dummy link type: %v", hasDummy)

	v, err := NewVIPs(discard(), VIPOptions{Interface: "vip0", Protocol: testProto, Namespace: path})
	if !hasDummy {
		if err == nil {
			v.Close()
			t.Fatal("NewVIPs with a missing interface on a kernel without dummy devices succeeded")
		}
		for _, want := range []string{"vip0 does not exist", "no dummy device support", "set director.vip_interface to lo"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
		// The fallback the error recommends works on the same kernel.
		lo, err := NewVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto, Namespace: path})
		if err != nil {
			t.Fatalf("NewVIPs on lo: %v", err)
		}
		t.Cleanup(func() { lo.Close() })
		if err := lo.Set(context.Background(), addrs("198.18.0.10")); err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff([]string{"127.0.0.1/8", "198.18.0.10/32 label lo:vip", "::1/128"}, addrsOf(t, ns, "lo")); diff != "" {
			t.Errorf("addresses on lo (-want +got):\n%s", diff)
		}
		return
	}
	if err != nil {
		t.Fatalf("NewVIPs with a missing interface on a kernel with dummy devices: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	if !linkUp(t, ns, "vip0") {
		t.Error("the created dummy device is not up")
	}
	if err := v.Set(context.Background(), addrs("198.18.0.10", "2001:db8::10")); err != nil {
		t.Fatal(err)
	}
	got := addrsOf(t, ns, "vip0")
	for _, want := range []string{"198.18.0.10/32 label vip0:vip", "2001:db8::10/128 nodad"} {
		if !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("vip0 addresses %v lack %q", got, want)
		}
	}
}

func sorted(s []string) []string {
	out := append([]string{}, s...)
	slices.Sort(out)
	return out
}

func strs(as []netip.Addr) []string {
	var out []string
	for _, a := range as {
		out = append(out, a.String())
	}
	return out
}

// TestPrivilegedVIPsLocalRoute runs the local-route binding against this
// host's kernel: VIPs become local through routes in the local table, the
// kernel's own local routes and an operator's are untouched, a new value adopts
// ours, and the VIP really is local (a socket binds and connects to it).
func TestPrivilegedVIPsLocalRoute(t *testing.T) {
	ns := netlab.New(t).Namespace("lroute")
	path := nsPath(ns)
	ns.MustRun("ip", "route", "add", "local", "192.0.2.5/32", "dev", "lo", "table", "local", "proto", "static")
	opts := VIPOptions{Interface: "lo", Protocol: testProto, Namespace: path, Binding: BindLocalRoute}
	v, err := NewVIPs(discard(), opts)
	if err != nil {
		t.Fatalf("NewVIPs: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	ctx := context.Background()
	before := localRoutes(t, ns)

	if err := v.Set(ctx, addrs("198.18.0.10", "198.18.0.11", "2001:db8::10", "192.0.2.5")); err != nil {
		t.Fatal(err)
	}
	want := append(slices.Clone(before),
		"local 198.18.0.10 dev lo proto 250 scope host",
		"local 198.18.0.11 dev lo proto 250 scope host",
		"local 2001:db8::10 dev lo proto 250 metric 1024 pref medium")
	slices.Sort(want)
	if diff := cmp.Diff(want, localRoutes(t, ns)); diff != "" {
		t.Errorf("local table (-want +got):\n%s", diff)
	}
	if got := addrsOf(t, ns, "lo"); !slices.Equal(got, []string{"127.0.0.1/8", "::1/128"}) {
		t.Errorf("the local-route binding added addresses to lo: %v", got)
	}
	// Local for real: bind and connect over IPv4.
	if out, err := ns.Run("python3", "-c",
		`import socket; s=socket.socket(); s.bind(("198.18.0.10", 0)); s.listen(); c=socket.create_connection(s.getsockname(), 2); print("ok")`); err != nil || !strings.Contains(out, "ok") {
		t.Errorf("a socket cannot bind and connect to the VIP bound as a local route: %v\n%s", err, out)
	}

	// Restart and shrink: the new value adopts and removes only its own.
	v.Close()
	v2, err := NewVIPs(discard(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v2.Close() })
	owned, err := v2.Owned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"198.18.0.10", "198.18.0.11", "2001:db8::10"}, strs(owned)); diff != "" {
		t.Errorf("adopted (-want +got):\n%s", diff)
	}
	if err := v2.Set(ctx, nil); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before, localRoutes(t, ns)); diff != "" {
		t.Errorf("after the empty set the local table is not as before (-want +got):\n%s", diff)
	}
}

// localRoutes lists the namespace's local table, both families, sorted.
func localRoutes(t *testing.T, ns *netlab.NS) []string {
	t.Helper()
	var out []string
	for _, fam := range []string{"-4", "-6"} {
		for _, l := range strings.Split(ns.MustRun("ip", fam, "route", "show", "table", "local"), "\n") {
			if l = strings.TrimSpace(l); l != "" {
				out = append(out, l)
			}
		}
	}
	slices.Sort(out)
	return out
}
