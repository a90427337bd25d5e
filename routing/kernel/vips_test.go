package kernel

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const testProto = 250

func discard() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func addrs(ss ...string) []netip.Addr {
	out := []netip.Addr{}
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// loState renders the addresses of lo as "prefix proto label flags" lines.
func loState(k *fakeKernel) []string {
	var out []string
	for _, a := range k.addrTab[1] {
		line := a.Prefix.String()
		if a.Proto != 0 {
			line += " proto " + strconv.Itoa(a.Proto)
		}
		if a.Label != "" {
			line += " label " + a.Label
		}
		if a.Flags&unix.IFA_F_NODAD != 0 {
			line += " nodad"
		}
		out = append(out, line)
	}
	return out
}

// addrVIPs returns a VIPs binding addresses in the fake kernel.
func addrVIPs(k *fakeKernel, iface string, proto int) *VIPs {
	return newVIPs(discard(), VIPOptions{Interface: iface, Protocol: proto}, k, &addrBinder{k: k, proto: proto, iface: iface}, nil)
}

var loBase = []string{"127.0.0.1/8 label lo", "::1/128 proto 1"}

func withBase(extra ...string) []string { return append(append([]string{}, loBase...), extra...) }

func TestVIPsSetScenario(t *testing.T) {
	k := newFakeKernel(t)
	// An operator's own address on lo, and one more on another device.
	k.addrTab[1] = append(k.addrTab[1], ifAddr{Prefix: netip.MustParsePrefix("192.0.2.5/32")})
	v := addrVIPs(k, "lo", testProto)
	ctx := context.Background()

	steps := []struct {
		name      string
		set       []netip.Addr
		wantLo    []string
		wantOwned []netip.Addr
	}{
		{
			name:      "add IPv4 and IPv6",
			set:       addrs("198.18.0.10", "2001:db8::10"),
			wantLo:    withBase("192.0.2.5/32", "198.18.0.10/32 proto 250 label lo:vip", "2001:db8::10/128 proto 250 nodad"),
			wantOwned: addrs("198.18.0.10", "2001:db8::10"),
		},
		{
			name:      "same set again changes nothing",
			set:       addrs("2001:db8::10", "198.18.0.10", "198.18.0.10"),
			wantLo:    withBase("192.0.2.5/32", "198.18.0.10/32 proto 250 label lo:vip", "2001:db8::10/128 proto 250 nodad"),
			wantOwned: addrs("198.18.0.10", "2001:db8::10"),
		},
		{
			name:      "replace: one removed, one added",
			set:       addrs("198.18.0.10", "198.18.0.11"),
			wantLo:    withBase("192.0.2.5/32", "198.18.0.10/32 proto 250 label lo:vip", "198.18.0.11/32 proto 250 label lo:vip"),
			wantOwned: addrs("198.18.0.10", "198.18.0.11"),
		},
		{
			name:      "a wanted VIP bound by the operator is used, not owned",
			set:       addrs("192.0.2.5", "198.18.0.11"),
			wantLo:    withBase("192.0.2.5/32", "198.18.0.11/32 proto 250 label lo:vip"),
			wantOwned: addrs("198.18.0.11"),
		},
		{
			name:      "empty set removes only ours",
			set:       nil,
			wantLo:    withBase("192.0.2.5/32"),
			wantOwned: nil,
		},
	}
	for _, st := range steps {
		if err := v.Set(ctx, st.set); err != nil {
			t.Fatalf("%s: Set: %v", st.name, err)
		}
		if diff := cmp.Diff(st.wantLo, loState(k)); diff != "" {
			t.Errorf("%s: addresses on lo (-want +got):\n%s", st.name, diff)
		}
		owned, err := v.Owned(ctx)
		if err != nil {
			t.Fatalf("%s: Owned: %v", st.name, err)
		}
		if diff := cmp.Diff(st.wantOwned, owned, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
			t.Errorf("%s: owned (-want +got):\n%s", st.name, diff)
		}
	}
}

func TestVIPsAdoptAfterRestart(t *testing.T) {
	k := newFakeKernel(t)
	ctx := context.Background()
	first := addrVIPs(k, "lo", testProto)
	if err := first.Set(ctx, addrs("198.18.0.10", "198.18.0.11", "2001:db8::10")); err != nil {
		t.Fatal(err)
	}
	// Another daemon on the same host uses another protocol number: its
	// addresses must be left alone, exactly like an operator's.
	other := addrVIPs(k, "lo", 251)
	if err := other.Set(ctx, addrs("198.18.0.99")); err != nil {
		t.Fatal(err)
	}

	// "Restart": a new value with no memory of the first one.
	second := addrVIPs(k, "lo", testProto)
	owned, err := second.Owned(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(addrs("198.18.0.10", "198.18.0.11", "2001:db8::10"), owned, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("adopted (-want +got):\n%s", diff)
	}
	if err := second.Set(ctx, addrs("198.18.0.11")); err != nil {
		t.Fatal(err)
	}
	want := withBase("198.18.0.11/32 proto 250 label lo:vip", "198.18.0.99/32 proto 251 label lo:vip")
	if diff := cmp.Diff(want, loState(k)); diff != "" {
		t.Errorf("addresses on lo (-want +got):\n%s", diff)
	}
}

func TestVIPsSetErrors(t *testing.T) {
	tests := []struct {
		name      string
		setup     func(k *fakeKernel)
		set       []netip.Addr
		wantErr   string
		wantLo    []string
		wantDumps int
	}{
		{
			name:      "interrupted dumps are retried",
			setup:     func(k *fakeKernel) { k.interrupts = 2 },
			set:       addrs("198.18.0.10"),
			wantLo:    withBase("198.18.0.10/32 proto 250 label lo:vip"),
			wantDumps: 4, // two interrupted, one good, one to verify the mark
		},
		{
			name:      "a dump interrupted every time fails, bounded",
			setup:     func(k *fakeKernel) { k.interrupts = 100 },
			set:       addrs("198.18.0.10"),
			wantErr:   "interrupted by concurrent changes 5 times",
			wantLo:    loBase,
			wantDumps: dumpAttempts,
		},
		{
			name:      "a kernel without IFA_PROTO is reported and the address removed",
			setup:     func(k *fakeKernel) { k.dropProto = true },
			set:       addrs("198.18.0.10"),
			wantErr:   "Linux 6.1 or later needed",
			wantLo:    loBase,
			wantDumps: 2,
		},
		{
			name:      "invalid VIPs fail, valid ones are still bound",
			set:       addrs("127.0.0.2", "198.18.0.10", "fe80::1", "ff02::1"),
			wantErr:   "VIP 127.0.0.2 is not a unicast global address",
			wantLo:    withBase("198.18.0.10/32 proto 250 label lo:vip"),
			wantDumps: 2,
		},
		{
			name:    "an IPv4-mapped IPv6 VIP is bound as IPv4",
			set:     []netip.Addr{netip.MustParseAddr("::ffff:198.18.0.10")},
			wantLo:  withBase("198.18.0.10/32 proto 250 label lo:vip"),
			wantErr: "",
			// one dump, one verify
			wantDumps: 2,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel(t)
			if tt.setup != nil {
				tt.setup(k)
			}
			v := addrVIPs(k, "lo", testProto)
			err := v.Set(context.Background(), tt.set)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Set: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Set error = %v, want it to contain %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.wantLo, loState(k)); diff != "" {
				t.Errorf("addresses on lo (-want +got):\n%s", diff)
			}
			if k.dumps != tt.wantDumps {
				t.Errorf("dumps = %d, want %d", k.dumps, tt.wantDumps)
			}
		})
	}
}

func TestVIPsCanceledContextChangesNothing(t *testing.T) {
	k := newFakeKernel(t)
	v := addrVIPs(k, "lo", testProto)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := v.Set(ctx, addrs("198.18.0.10")); err == nil {
		t.Fatal("Set with a canceled context succeeded")
	}
	if diff := cmp.Diff(loBase, loState(k)); diff != "" {
		t.Errorf("addresses on lo (-want +got):\n%s", diff)
	}
}

func TestVIPsPrepareInterface(t *testing.T) {
	tests := []struct {
		name      string
		iface     string
		dummy     bool
		wantErr   string
		wantLinks []string
	}{
		{name: "lo exists", iface: "lo", wantLinks: []string{"lo up"}},
		{name: "missing device becomes a dummy", iface: "vip0", dummy: true, wantLinks: []string{"lo up", "vip0 up"}},
		{name: "no dummy support is a clear error", iface: "vip0", dummy: false,
			wantErr: "this kernel has no dummy device support", wantLinks: []string{"lo up"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel(t)
			k.dummy = tt.dummy
			v := addrVIPs(k, tt.iface, testProto)
			err := v.prepareInterface()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("prepareInterface: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("prepareInterface error = %v, want it to contain %q", err, tt.wantErr)
			}
			var got []string
			for _, name := range []string{"lo", "vip0"} {
				if l, ok := k.links[name]; ok {
					state := "down"
					if l.Flags&net.FlagUp != 0 {
						state = "up"
					}
					got = append(got, name+" "+state)
				}
			}
			if diff := cmp.Diff(tt.wantLinks, got); diff != "" {
				t.Errorf("links (-want +got):\n%s", diff)
			}
		})
	}
}

func TestVIPsLabelOnlyWhenItFits(t *testing.T) {
	tests := []struct {
		iface string
		want  string
	}{
		{"lo", "lo:vip"},
		{"vips0", "vips0:vip"},
		{"directord-vip0", ""}, // 14 + 4 characters do not fit IFNAMSIZ
	}
	for _, tt := range tests {
		b := &addrBinder{proto: testProto, iface: tt.iface}
		if got := b.mark(netip.MustParsePrefix("198.18.0.1/32")).Label; got != tt.want {
			t.Errorf("label on %s = %q, want %q", tt.iface, got, tt.want)
		}
	}
}

func TestCheckProtocolAndTable(t *testing.T) {
	protos := map[int]bool{-1: false, 0: false, 1: false, 4: false, 5: true, 11: false, 12: false, 18: true,
		186: false, 198: false, 199: true, 250: true, 255: true, 256: false}
	for p, ok := range protos {
		if err := checkProtocol(p); (err == nil) != ok {
			t.Errorf("checkProtocol(%d) = %v, want ok=%v", p, err, ok)
		}
	}
	tables := map[int]bool{0: false, 1: true, 200: true, 252: true, 253: false, 254: true, 255: false, 1000: true}
	for tb, ok := range tables {
		if err := checkTable(tb); (err == nil) != ok {
			t.Errorf("checkTable(%d) = %v, want ok=%v", tb, err, ok)
		}
	}
}

// localRoute is a route of the kernel's local table.
func localRoute(dst string, proto, ifindex int, typ int) netlink.Route {
	r := hostRoute(dst, unix.RT_TABLE_LOCAL, proto, ifindex)
	r.Type = typ
	return r
}

func TestVIPsLocalRouteBinding(t *testing.T) {
	k := newFakeKernel(t)
	k.links["eth0"] = &netlink.Device{LinkAttrs: netlink.LinkAttrs{Name: "eth0", Index: 2, Flags: net.FlagUp}}
	// What the kernel keeps in its local table for the addresses it has, plus
	// an operator's AnyIP route and one of ours on a device that is gone.
	k.routes = []netlink.Route{
		localRoute("127.0.0.1/32", 2, 1, unix.RTN_LOCAL),
		localRoute("127.255.255.255/32", 2, 1, unix.RTN_BROADCAST),
		localRoute("10.0.1.11/32", 2, 2, unix.RTN_LOCAL),
		localRoute("192.0.2.5/32", 4, 1, unix.RTN_LOCAL),
		localRoute("198.18.0.12/32", testProto, 9, unix.RTN_LOCAL),
		hostRoute("198.18.0.10/32", 254, testProto, 1), // an advertisement route in main: not a binding
	}
	base := []string{
		"254/198.18.0.10/32 proto 250 dev 1",
		"255/10.0.1.11/32 proto 2 dev 2",
		"255/127.0.0.1/32 proto 2 dev 1",
		"255/127.255.255.255/32 proto 2 dev 1",
		"255/192.0.2.5/32 proto 4 dev 1",
	}
	v := newVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto, Binding: BindLocalRoute}, k, &routeBinder{k: k, proto: testProto}, nil)
	ctx := context.Background()
	steps := []struct {
		name string
		set  []netip.Addr
		ours []string
	}{
		{"bind, and re-point the stale one", addrs("198.18.0.10", "198.18.0.12", "2001:db8::10"),
			[]string{"255/198.18.0.10/32 proto 250 dev 1", "255/198.18.0.12/32 proto 250 dev 1", "255/2001:db8::10/128 proto 250 dev 1"}},
		{"local already through an address or someone's route: used, not owned", addrs("10.0.1.11", "192.0.2.5", "198.18.0.10"),
			[]string{"255/198.18.0.10/32 proto 250 dev 1"}},
		{"empty set", nil, nil},
	}
	for _, st := range steps {
		if err := v.Set(ctx, st.set); err != nil {
			t.Fatalf("%s: Set: %v", st.name, err)
		}
		want := append(slices.Clone(base), st.ours...)
		slices.Sort(want)
		if diff := cmp.Diff(want, routeState(k)); diff != "" {
			t.Errorf("%s: routes (-want +got):\n%s", st.name, diff)
		}
		for _, r := range k.routes {
			if int(r.Protocol) == testProto && r.Table == unix.RT_TABLE_LOCAL && r.Type != unix.RTN_LOCAL {
				t.Errorf("%s: our route %v is not of type local", st.name, r.Dst)
			}
		}
	}
	owned, err := v.Owned(ctx)
	if err != nil || len(owned) != 0 {
		t.Errorf("Owned() = %v, %v; want none", owned, err)
	}
}

func TestNewVIPsMissingNamespace(t *testing.T) {
	_, err := NewVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto, Namespace: "/run/netns/directord-test-does-not-exist"})
	if err == nil || !strings.Contains(err.Error(), "open network namespace /run/netns/directord-test-does-not-exist") {
		t.Fatalf("NewVIPs in a missing namespace: err = %v, want an error naming the namespace", err)
	}
	_, err = NewAdvertiser(discard(), AdvertiserOptions{Table: 200, Protocol: testProto, Interface: "lo", Namespace: "/run/netns/directord-test-does-not-exist"})
	if err == nil || !strings.Contains(err.Error(), "open network namespace") {
		t.Fatalf("NewAdvertiser in a missing namespace: err = %v, want an error naming the namespace", err)
	}
	_, err = NewAdvertiser(discard(), AdvertiserOptions{Table: 255, Protocol: testProto, Interface: "lo"})
	if err == nil || !strings.Contains(err.Error(), "reserved by the kernel") {
		t.Fatalf("NewAdvertiser with the local table: err = %v", err)
	}
	_, err = NewVIPs(discard(), VIPOptions{Interface: "lo", Protocol: 188})
	if err == nil || !strings.Contains(err.Error(), "belongs to FRR") {
		t.Fatalf("NewVIPs with FRR's protocol: err = %v", err)
	}
}

// TestVIPsRepairCounted: a VIP removed behind the VIPs' back is bound again
// by the next Set and reported as a repair, once; VIPs found bound at start
// (adopted), newly wanted or removed on purpose are not repairs.
func TestVIPsRepairCounted(t *testing.T) {
	k := newFakeKernel(t)
	k.addrTab[1] = append(k.addrTab[1], ifAddr{Prefix: netip.MustParsePrefix("198.18.0.9/32"), Proto: testProto})
	var repaired []netip.Addr
	v := newVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto, OnRepair: func(a netip.Addr) { repaired = append(repaired, a) }},
		k, &addrBinder{k: k, proto: testProto, iface: "lo"}, nil)
	ctx := context.Background()
	set := func(vips ...string) {
		t.Helper()
		if err := v.Set(ctx, addrs(vips...)); err != nil {
			t.Fatal(err)
		}
	}
	set("198.18.0.9", "198.18.0.10") // one adopted, one new
	set("198.18.0.9", "198.18.0.10")
	if len(repaired) != 0 {
		t.Fatalf("repairs without drift: %v", repaired)
	}
	if err := k.delAddr(1, netip.MustParsePrefix("198.18.0.10/32")); err != nil { // ip addr del by hand
		t.Fatal(err)
	}
	set("198.18.0.9", "198.18.0.10")
	if want := addrs("198.18.0.10"); !slices.Equal(repaired, want) {
		t.Errorf("repairs %v, want %v", repaired, want)
	}
	if !slices.Contains(loState(k), "198.18.0.10/32 proto 250 label lo:vip") {
		t.Errorf("the VIP was not bound again: %v", loState(k))
	}
	set("198.18.0.9") // 198.18.0.10 no longer wanted
	set("198.18.0.9", "198.18.0.10")
	if len(repaired) != 1 {
		t.Errorf("a VIP unbound on purpose and wanted again counted as a repair: %v", repaired)
	}
}

// TestVIPsLogsManyBindingsInOneLine: a Set that binds or unbinds a handful
// of VIPs logs each; one that binds or unbinds many (a start-up at 1,000
// VIPs) logs one line with the count, and each VIP at debug level only.
func TestVIPsLogsManyBindingsInOneLine(t *testing.T) {
	k := newFakeKernel(t)
	var logs strings.Builder
	log := slog.New(slog.NewTextHandler(&logs, nil))
	v := newVIPs(log, VIPOptions{Interface: "lo", Protocol: testProto}, k, &addrBinder{k: k, proto: testProto, iface: "lo"}, nil)
	var many []netip.Addr
	for i := range 20 {
		many = append(many, netip.AddrFrom4([4]byte{198, 18, 1, byte(i)}))
	}
	steps := []struct {
		name string
		set  []netip.Addr
		want []string
	}{
		{"20 bound", many, []string{`msg="bound VIPs" interface=lo binding=address count=20 first=198.18.1.0 last=198.18.1.19 reason="each is logged at debug level"`}},
		{"17 unbound", many[:3], []string{`msg="unbound VIPs" interface=lo binding=address count=17 first=198.18.1.3 last=198.18.1.19 reason="each is logged at debug level"`}},
		{"2 bound, 1 unbound", addrs("198.18.1.0", "198.18.1.1", "198.18.2.1", "198.18.2.2"), []string{
			`msg="unbound VIP" interface=lo binding=address vip=198.18.1.2`, `msg="bound VIP" interface=lo binding=address vip=198.18.2.1`,
			`msg="bound VIP" interface=lo binding=address vip=198.18.2.2`}},
	}
	for _, st := range steps {
		logs.Reset()
		if err := v.Set(context.Background(), st.set); err != nil {
			t.Fatalf("%s: Set: %v", st.name, err)
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
			if _, rest, ok := strings.Cut(line, "level=INFO "); ok {
				got = append(got, rest)
			}
		}
		if diff := cmp.Diff(st.want, got); diff != "" {
			t.Errorf("%s: info lines (-want +got):\n%s", st.name, diff)
		}
	}
}
