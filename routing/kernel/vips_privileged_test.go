//go:build linux && privileged

package kernel

import (
	"context"
	"errors"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestPrivilegedVIPsOnLo runs VIPs against this host's kernel in a fresh
// namespace: full-set changes on lo for both families, an operator's addresses
// untouched, adoption by a new value after a "restart".
func TestPrivilegedVIPsOnLo(t *testing.T) {
	requireRoot(t)
	name := runPrefix()
	path := newNetns(t, name)
	// The operator's own addresses: one on lo, one IPv6 with nodad like ours.
	sh(t, "ip", "-n", name, "addr", "add", "192.0.2.5/32", "dev", "lo")
	sh(t, "ip", "-n", name, "-6", "addr", "add", "2001:db8:ffff::5/128", "dev", "lo", "nodad")
	operator := []string{"127.0.0.1/8", "192.0.2.5/32", "2001:db8:ffff::5/128 nodad", "::1/128"}
	ctx := context.Background()

	if linkUp(t, name, "lo") {
		t.Fatal("lo of a fresh namespace is expected down before NewVIPs")
	}
	v, err := NewVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto, Namespace: path})
	if err != nil {
		t.Fatalf("NewVIPs: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	if !linkUp(t, name, "lo") {
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
		if diff := cmp.Diff(sorted(want), addrsOf(t, name, "lo")); diff != "" {
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
	if diff := cmp.Diff(sorted(want), addrsOf(t, name, "lo")); diff != "" {
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
	if diff := cmp.Diff(sorted(want), addrsOf(t, name, "lo")); diff != "" {
		t.Errorf("another protocol number removed addresses (-want +got):\n%s", diff)
	}
}

// TestPrivilegedVIPsDummyInterface checks what a VIP interface that does not
// exist turns into on this kernel: a dummy device where the kernel has the
// dummy link type, a clear error where it has not (this machine's kernel).
func TestPrivilegedVIPsDummyInterface(t *testing.T) {
	requireRoot(t)
	name := runPrefix()
	path := newNetns(t, name)
	probe := exec.Command("ip", "-n", name, "link", "add", "probe0", "type", "dummy")
	hasDummy := probe.Run() == nil
	if hasDummy {
		sh(t, "ip", "-n", name, "link", "del", "probe0")
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
		if diff := cmp.Diff([]string{"127.0.0.1/8", "198.18.0.10/32 label lo:vip", "::1/128"}, addrsOf(t, name, "lo")); diff != "" {
			t.Errorf("addresses on lo (-want +got):\n%s", diff)
		}
		return
	}
	if err != nil {
		t.Fatalf("NewVIPs with a missing interface on a kernel with dummy devices: %v", err)
	}
	t.Cleanup(func() { v.Close() })
	if !linkUp(t, name, "vip0") {
		t.Error("the created dummy device is not up")
	}
	if err := v.Set(context.Background(), addrs("198.18.0.10", "2001:db8::10")); err != nil {
		t.Fatal(err)
	}
	got := addrsOf(t, name, "vip0")
	for _, want := range []string{"198.18.0.10/32 label vip0:vip", "2001:db8::10/128 nodad"} {
		if !strings.Contains(strings.Join(got, "\n"), want) {
			t.Errorf("vip0 addresses %v lack %q", got, want)
		}
	}
}

// TestPrivilegedVIPsNamespaceErrors checks the error for a namespace that does
// not exist.
func TestPrivilegedVIPsNamespaceErrors(t *testing.T) {
	requireRoot(t)
	_, err := NewVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto, Namespace: "/run/netns/" + runPrefix() + "-missing"})
	if err == nil || !strings.Contains(err.Error(), "open network namespace") {
		t.Fatalf("NewVIPs in a missing namespace: err = %v, want an open error", err)
	}
	if errors.Unwrap(err) == nil {
		t.Errorf("error %v does not wrap the cause", err)
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
