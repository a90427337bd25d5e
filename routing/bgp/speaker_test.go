package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/osrg/gobgp/v4/api"
	"github.com/osrg/gobgp/v4/pkg/apiutil"
	"github.com/osrg/gobgp/v4/pkg/packet/bgp"

	"github.com/anycast-director/director/routing"
)

// The tests do not run in parallel: GoBGP keeps route selection options in
// package variables that every StartBgp writes, so two servers starting at
// once race (see startSpeaker).

func ptr[T any](v T) *T { return &v }

// netipCmp lets go-cmp compare netip values (they have unexported fields).
func netipCmp() cmp.Option {
	return cmp.Options{
		cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
		cmp.Comparer(func(a, b netip.Prefix) bool { return a == b }),
	}
}

// waitRoutes waits until the router's Adj-RIB-In from the speaker equals want.
func waitRoutes(t *testing.T, r *testRouter, from string, want map[netip.Prefix]received) {
	t.Helper()
	waitFor(t, 10*time.Second, "router routes", func() string {
		got, err := r.routes(from)
		if err != nil {
			return err.Error()
		}
		if len(got) == 0 && len(want) == 0 {
			return ""
		}
		if d := cmp.Diff(want, got, netipCmp()); d != "" {
			return "routes (-want +got):\n" + d
		}
		return ""
	})
}

// TestSpeakerSetScenario drives one session through a sequence of whole-set
// changes; each step builds on the previous state and asserts on exactly
// what the router holds afterwards.
func TestSpeakerSetScenario(t *testing.T) {
	const local = "127.0.10.2"
	r := newTestRouter(t, "127.0.10.1")
	r.addSpeaker(t, local)
	s, _ := startSpeaker(t, speakerConfig(local, r), []*testRouter{r}, "198.18.0.10/32", "198.18.0.11/32")
	waitEstablished(t, s)

	a, b := netip.MustParsePrefix("198.18.0.10/32"), netip.MustParsePrefix("198.18.0.11/32")
	nh := netip.MustParseAddr(local)
	steps := []struct {
		name string
		set  []routing.Advertisement
		want map[netip.Prefix]received
	}{
		{
			name: "announce one VIP, next hop self",
			set:  []routing.Advertisement{{Prefix: a}},
			want: map[netip.Prefix]received{a: {NextHop: nh, ASPath: []uint32{speakerASN}}},
		},
		{
			name: "attributes: communities, large communities, MED, prepend",
			set: []routing.Advertisement{{
				Prefix: a, Communities: []uint32{65100<<16 | 20, 65100<<16 | 10}, LargeCommunities: [][3]uint32{{65100, 1, 2}},
				MED: ptr(uint32(50)), ASPathPrepend: 2,
			}},
			want: map[netip.Prefix]received{a: {
				NextHop: nh, ASPath: []uint32{speakerASN, speakerASN, speakerASN}, MED: ptr(uint32(50)),
				Communities: []uint32{65100<<16 | 10, 65100<<16 | 20}, Large: [][3]uint32{{65100, 1, 2}},
			}},
		},
		{
			name: "graceful shutdown adds 65535:0 and the shutdown MED",
			set: []routing.Advertisement{{
				Prefix: a, Communities: []uint32{65100<<16 | 10}, MED: ptr(uint32(1000)), GracefulShutdown: true,
			}},
			want: map[netip.Prefix]received{a: {
				NextHop: nh, ASPath: []uint32{speakerASN}, MED: ptr(uint32(1000)),
				Communities: []uint32{65100<<16 | 10, routing.GracefulShutdownCommunity},
			}},
		},
		{
			name: "a second VIP",
			set:  []routing.Advertisement{{Prefix: a}, {Prefix: b}},
			want: map[netip.Prefix]received{
				a: {NextHop: nh, ASPath: []uint32{speakerASN}},
				b: {NextHop: nh, ASPath: []uint32{speakerASN}},
			},
		},
		{
			name: "a smaller set withdraws the rest",
			set:  []routing.Advertisement{{Prefix: b}},
			want: map[netip.Prefix]received{b: {NextHop: nh, ASPath: []uint32{speakerASN}}},
		},
		{
			name: "the same set again changes nothing",
			set:  []routing.Advertisement{{Prefix: b}},
			want: map[netip.Prefix]received{b: {NextHop: nh, ASPath: []uint32{speakerASN}}},
		},
		{
			name: "nil withdraws everything",
			set:  nil,
			want: map[netip.Prefix]received{},
		},
	}
	for _, st := range steps {
		if err := s.Set(context.Background(), st.set); err != nil {
			t.Fatalf("%s: Set: %v", st.name, err)
		}
		waitRoutes(t, r, local, st.want)
		got := s.Peers()[0].Advertised
		if got != len(st.want) {
			t.Errorf("%s: Peers().Advertised = %d, want %d", st.name, got, len(st.want))
		}
		checkAdvertised(t, st.name, s, st.set)
	}
	if err := s.Set(context.Background(), []routing.Advertisement{{Prefix: a}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	checkAdvertised(t, "after Stop", s, nil)
}

// checkAdvertised compares what the speaker says it advertises with the set
// it was given, in canonical form (sorted, communities sorted, the
// GRACEFUL_SHUTDOWN community as the flag).
func checkAdvertised(t *testing.T, step string, s *Speaker, set []routing.Advertisement) {
	t.Helper()
	want := make([]routing.Advertisement, 0, len(set))
	for _, ad := range set {
		ad.Communities = slices.Sorted(slices.Values(ad.Communities))
		want = append(want, ad)
	}
	slices.SortFunc(want, func(a, b routing.Advertisement) int { return a.Prefix.Addr().Compare(b.Prefix.Addr()) })
	got, err := s.Advertised(context.Background())
	if err != nil {
		t.Fatalf("%s: Advertised: %v", step, err)
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.Prefix{}), cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("%s: Advertised (-want +got):\n%s", step, diff)
	}
}

// TestSpeakerExportOnlyAllowed: a prefix that is not an allowed VIP never
// reaches the router, whether it comes through Set or is injected into the
// speaker's RIB directly; removing a VIP from the allowed set withdraws it.
func TestSpeakerExportOnlyAllowed(t *testing.T) {
	const local = "127.0.11.2"
	r := newTestRouter(t, "127.0.11.1")
	r.addSpeaker(t, local)
	s, _ := startSpeaker(t, speakerConfig(local, r), []*testRouter{r}, "198.18.1.10/32")
	waitEstablished(t, s)

	vip := netip.MustParsePrefix("198.18.1.10/32")
	rogue := netip.MustParsePrefix("203.0.113.0/24")
	rogueHost := netip.MustParsePrefix("198.18.1.99/32")

	// Set refuses the prefix that is not allowed and applies the rest.
	err := s.Set(context.Background(), []routing.Advertisement{{Prefix: vip}, {Prefix: rogueHost}})
	if !errors.Is(err, ErrNotAllowed) {
		t.Errorf("Set with a prefix outside the allowed set: err = %v, want ErrNotAllowed", err)
	}
	// Inject a route into GoBGP's RIB behind the speaker's back.
	nlri, _ := bgp.NewIPAddrPrefix(rogue)
	nh, _ := bgp.NewPathAttributeNextHop(netip.MustParseAddr("192.0.2.1"))
	_, err = s.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{
		Family: bgp.RF_IPv4_UC, Nlri: nlri,
		Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeAsPath(nil), nh},
	}}})
	if err != nil {
		t.Fatalf("inject %s into the speaker's RIB: %v", rogue, err)
	}
	// A sentinel route sent after the injection: once it has arrived, the
	// injected route would have arrived too (one TCP stream, in order).
	if err := s.Set(context.Background(), []routing.Advertisement{{Prefix: vip, MED: ptr(uint32(7))}}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	waitRoutes(t, r, local, map[netip.Prefix]received{
		vip: {NextHop: netip.MustParseAddr(local), ASPath: []uint32{speakerASN}, MED: ptr(uint32(7))},
	})
	for _, p := range []netip.Prefix{rogue, rogueHost} {
		if r.everSeen(p) {
			t.Errorf("router received %s, which is not an allowed VIP", p)
		}
	}
	if !r.everSeen(vip) {
		t.Errorf("router's update log misses %s: the never-seen assertion above proves nothing", vip)
	}

	// Dropping the VIP from the allowed set withdraws it.
	if err := s.SetAllowed(nil); err != nil {
		t.Fatalf("SetAllowed(nil): %v", err)
	}
	waitRoutes(t, r, local, map[netip.Prefix]received{})
}

// TestSpeakerImportRejectsEverything: routes the router sends reach the
// speaker's Adj-RIB-In but never its RIB.
func TestSpeakerImportRejectsEverything(t *testing.T) {
	const local = "127.0.12.2"
	r := newTestRouter(t, "127.0.12.1")
	r.addSpeaker(t, local)
	s, _ := startSpeaker(t, speakerConfig(local, r), []*testRouter{r})
	waitEstablished(t, s)

	offered := netip.MustParsePrefix("10.99.0.0/16")
	nlri, _ := bgp.NewIPAddrPrefix(offered)
	nh, _ := bgp.NewPathAttributeNextHop(netip.MustParseAddr("0.0.0.0"))
	_, err := r.srv.AddPath(apiutil.AddPathRequest{Paths: []*apiutil.Path{{
		Family: bgp.RF_IPv4_UC, Nlri: nlri,
		Attrs: []bgp.PathAttributeInterface{bgp.NewPathAttributeOrigin(0), bgp.NewPathAttributeAsPath(nil), nh},
	}}})
	if err != nil {
		t.Fatalf("router: add %s: %v", offered, err)
	}
	listIn := func(table api.TableType, name string) []string {
		var got []string
		err := s.srv.ListPath(apiutil.ListPathRequest{TableType: table, Name: name, Family: bgp.RF_IPv4_UC},
			func(p bgp.NLRI, _ []*apiutil.Path) { got = append(got, p.String()) })
		if err != nil {
			t.Fatalf("list speaker table %v: %v", table, err)
		}
		return got
	}
	waitFor(t, 10*time.Second, "the route in the speaker's Adj-RIB-In", func() string {
		if got := listIn(api.TableType_TABLE_TYPE_ADJ_IN, r.addr.String()); len(got) != 1 {
			return fmt.Sprintf("adj-in holds %v", got)
		}
		return ""
	})
	if got := listIn(api.TableType_TABLE_TYPE_GLOBAL, ""); len(got) != 0 {
		t.Errorf("speaker RIB holds %v, want nothing: the import policy must reject every route", got)
	}
}

// TestSpeakerEventsAndStop: peer events are reported, and Stop ends the
// session with a Cease the router sees.
func TestSpeakerEventsAndStop(t *testing.T) {
	const local = "127.0.13.2"
	r := newTestRouter(t, "127.0.13.1")
	r.addSpeaker(t, local)
	s, log := startSpeaker(t, speakerConfig(local, r), []*testRouter{r}, "198.18.3.10/32")
	waitEstablished(t, s)
	if err := s.Set(context.Background(), []routing.Advertisement{{Prefix: netip.MustParsePrefix("198.18.3.10/32")}}); err != nil {
		t.Fatalf("Set: %v", err)
	}
	waitFor(t, 5*time.Second, "advertised count", func() string {
		if n := s.Peers()[0].Advertised; n != 1 {
			return fmt.Sprintf("advertised %d", n)
		}
		return ""
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Stop(ctx); err != nil {
		t.Fatalf("Stop: %v", err)
	}

	// The router saw the session end with a Cease NOTIFICATION.
	waitFor(t, 5*time.Second, "the router to see the cease", func() string {
		for _, ev := range r.stateEvents() {
			if ev.SessionState == bgp.BGP_FSM_IDLE && ev.DisconnectReason == api.PeerState_DISCONNECT_REASON_NOTIFICATION_RECEIVED {
				if !strings.Contains(strings.ToLower(ev.DisconnectMessage), "administrative shutdown") {
					return "router got a notification that is not an administrative shutdown: " + ev.DisconnectMessage
				}
				return ""
			}
		}
		return fmt.Sprintf("router events so far: %+v", r.stateEvents())
	})

	// The speaker reported the session going up, then down. The report of
	// the drop may come from GoBGP's event goroutine, which can still be
	// delivering it when Stop returns.
	waitFor(t, 5*time.Second, "the speaker's events", func() string {
		var states []string
		for _, ev := range log.all() {
			states = append(states, ev.Previous+">"+ev.Peer.State)
		}
		joined := strings.Join(states, " ")
		if !strings.Contains(joined, ">established") || !strings.Contains(joined, "established>idle") {
			return fmt.Sprintf("speaker events %q: want a transition to established and one from established to idle", joined)
		}
		return ""
	})
	got := s.Peers()
	if len(got) != 1 || got[0].State != "idle" || got[0].Flaps != 1 {
		t.Errorf("Peers() after Stop = %+v, want one idle peer with 1 flap", got)
	}
	if err := s.Set(context.Background(), nil); !errors.Is(err, ErrStopped) {
		t.Errorf("Set after Stop: err = %v, want ErrStopped", err)
	}
}
