package kernel

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/vishvananda/netlink"

	"github.com/anycast-director/director/routing"
)

const testTable = 200

func ads(ss ...string) []routing.Advertisement {
	var out []routing.Advertisement
	for _, s := range ss {
		out = append(out, routing.Advertisement{Prefix: netip.MustParsePrefix(s)})
	}
	return out
}

func hostRoute(dst string, table, proto, ifindex int) netlink.Route {
	p := netip.MustParsePrefix(dst)
	return netlink.Route{
		Dst:       &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Table:     table,
		Protocol:  netlink.RouteProtocol(proto),
		LinkIndex: ifindex,
	}
}

// routeState renders every route as "table/dst proto P dev IF".
func routeState(k *fakeKernel) []string {
	var out []string
	for _, r := range k.routes {
		out = append(out, fmt.Sprintf("%d/%s proto %d dev %d", r.Table, r.Dst, r.Protocol, r.LinkIndex))
	}
	slices.Sort(out)
	return out
}

func TestAdvertiserSetScenario(t *testing.T) {
	k := newFakeKernel(t)
	// Routes that are not ours: another protocol in our table, our protocol in
	// another table, and the main table's default route.
	k.routes = []netlink.Route{
		hostRoute("203.0.113.1/32", testTable, 4, 1),
		hostRoute("198.18.0.99/32", 201, testProto, 1),
		hostRoute("0.0.0.0/0", 254, 4, 2),
	}
	foreign := []string{"200/203.0.113.1/32 proto 4 dev 1", "201/198.18.0.99/32 proto 250 dev 1", "254/0.0.0.0/0 proto 4 dev 2"}
	a := newAdvertiser(discard(), AdvertiserOptions{Table: testTable, Protocol: testProto, Interface: "lo"}, k, k, nil)
	ctx := context.Background()

	steps := []struct {
		name      string
		set       []routing.Advertisement
		wantOurs  []string
		wantAdded []netip.Prefix
	}{
		{
			name:     "advertise IPv4 and IPv6",
			set:      ads("198.18.0.10/32", "2001:db8::10/128"),
			wantOurs: []string{"200/198.18.0.10/32 proto 250 dev 1", "200/2001:db8::10/128 proto 250 dev 1"},
		},
		{
			name:     "duplicates (services sharing a VIP) are one route",
			set:      ads("198.18.0.10/32", "198.18.0.10/32", "2001:db8::10/128"),
			wantOurs: []string{"200/198.18.0.10/32 proto 250 dev 1", "200/2001:db8::10/128 proto 250 dev 1"},
		},
		{
			name:     "replace",
			set:      ads("198.18.0.10/32", "198.18.0.11/32"),
			wantOurs: []string{"200/198.18.0.10/32 proto 250 dev 1", "200/198.18.0.11/32 proto 250 dev 1"},
		},
		{
			name:     "empty set withdraws ours only",
			set:      nil,
			wantOurs: nil,
		},
	}
	for _, st := range steps {
		if err := a.Set(ctx, st.set); err != nil {
			t.Fatalf("%s: Set: %v", st.name, err)
		}
		want := append(slices.Clone(foreign), st.wantOurs...)
		slices.Sort(want)
		if diff := cmp.Diff(want, routeState(k)); diff != "" {
			t.Errorf("%s: routes (-want +got):\n%s", st.name, diff)
		}
		got, err := a.Advertised(ctx)
		if err != nil {
			t.Fatalf("%s: Advertised: %v", st.name, err)
		}
		var gotS []string
		for _, p := range got {
			gotS = append(gotS, fmt.Sprintf("%d/%s proto %d dev 1", testTable, p.Prefix, testProto))
		}
		if diff := cmp.Diff(st.wantOurs, gotS); diff != "" {
			t.Errorf("%s: Advertised (-want +got):\n%s", st.name, diff)
		}
	}
	if p := a.Peers(); len(p) != 0 {
		t.Errorf("Peers() = %v, want none", p)
	}
}

func TestAdvertiserRepairsAndFails(t *testing.T) {
	tests := []struct {
		name      string
		routes    []netlink.Route
		interrupt int
		set       []routing.Advertisement
		wantErr   string
		want      []string
	}{
		{
			name:   "our route on a stale interface index is re-pointed",
			routes: []netlink.Route{hostRoute("198.18.0.10/32", testTable, testProto, 7)},
			set:    ads("198.18.0.10/32"),
			want:   []string{"200/198.18.0.10/32 proto 250 dev 1"},
		},
		{
			name:   "an adopted route from a previous process stays",
			routes: []netlink.Route{hostRoute("198.18.0.10/32", testTable, testProto, 1)},
			set:    ads("198.18.0.10/32"),
			want:   []string{"200/198.18.0.10/32 proto 250 dev 1"},
		},
		{
			name:    "a foreign route for the VIP in our table is an error and stays",
			routes:  []netlink.Route{hostRoute("198.18.0.10/32", testTable, 4, 3)},
			set:     ads("198.18.0.10/32", "198.18.0.11/32"),
			wantErr: "not ours (another protocol number)",
			want:    []string{"200/198.18.0.10/32 proto 4 dev 3", "200/198.18.0.11/32 proto 250 dev 1"},
		},
		{
			name:    "not a host prefix",
			set:     ads("198.18.0.0/24", "198.18.0.11/32"),
			wantErr: "not a host prefix",
			want:    []string{"200/198.18.0.11/32 proto 250 dev 1"},
		},
		{
			name:      "interrupted dumps are retried",
			interrupt: dumpAttempts - 1,
			set:       ads("198.18.0.11/32"),
			want:      []string{"200/198.18.0.11/32 proto 250 dev 1"},
		},
		{
			name:      "a dump interrupted every time fails without changes",
			interrupt: dumpAttempts,
			set:       ads("198.18.0.11/32"),
			wantErr:   "interrupted by concurrent changes",
			want:      nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			k := newFakeKernel(t)
			k.routes = tt.routes
			k.interrupts = tt.interrupt
			a := newAdvertiser(discard(), AdvertiserOptions{Table: testTable, Protocol: testProto, Interface: "lo"}, k, k, nil)
			err := a.Set(context.Background(), tt.set)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Set: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Set error = %v, want it to contain %q", err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, routeState(k)); diff != "" {
				t.Errorf("routes (-want +got):\n%s", diff)
			}
		})
	}
}

func TestAdvertiserMissingInterface(t *testing.T) {
	k := newFakeKernel(t)
	a := newAdvertiser(discard(), AdvertiserOptions{Table: testTable, Protocol: testProto, Interface: "vip0"}, k, k, nil)
	err := a.Set(context.Background(), ads("198.18.0.10/32"))
	if err == nil || !strings.Contains(err.Error(), "look up VIP interface vip0") {
		t.Fatalf("Set error = %v, want a lookup error naming vip0", err)
	}
	if len(k.routes) != 0 {
		t.Errorf("routes = %v, want none", routeState(k))
	}
}
