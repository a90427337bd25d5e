package ipvs

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var web = Key{VIP: netip.MustParseAddr("198.18.0.10"), Port: 80, Protocol: 6}

func dst(addr string, weight int) Destination {
	return Destination{Address: netip.MustParseAddr(addr), Port: 80, Weight: weight, Forwarding: DirectRoute}
}

func mhPortFallback(s Service) Service {
	s.Flags = []string{"mh-port", "mh-fallback"}
	return s
}

func svc(k Key, sched string, ds ...Destination) Service {
	return Service{Key: k, Scheduler: sched, Destinations: ds}
}

func withConns(d Destination, active, inactive int) Destination {
	d.Conns.Active, d.Conns.Inactive = active, inactive
	return d
}

func draining(d Destination) Destination {
	d.Draining = true
	return d
}

// t0 is the tests' "now".
var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

// drainingUntil is draining(d) with a drain deadline.
func drainingUntil(d Destination, until time.Time) Destination {
	d.Draining, d.DrainUntil = true, until
	return d
}

// opLines renders ops as plan lines, which is also what a dry run prints.
func opLines(ops []Op) []string {
	var out []string
	for _, o := range ops {
		out = append(out, o.String())
	}
	return out
}

func TestDiff(t *testing.T) {
	v6 := Key{VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Protocol: 6}
	mhPort := svc(web, "mh", dst("10.0.2.21", 1))
	mhPort.Flags = []string{"mh-port"}
	flag2 := svc(web, "mh", dst("10.0.2.21", 1))
	flag2.Flags = []string{"flag-2"}
	persistent := svc(web, "wlc", dst("10.0.2.21", 1))
	persistent.Persistence = 300 * time.Second
	nat := svc(web, "mh", dst("10.0.2.21", 1))
	nat.Destinations[0].Forwarding = Masquerade
	invalid := svc(web, "mh", dst("10.0.2.21", 70000))

	tests := []struct {
		name       string
		want, have []Service
		ops        []string
	}{
		{
			name: "create inserts destinations in ascending order",
			want: []Service{svc(web, "wlc", dst("10.0.2.22", 1), dst("10.0.2.21", 1), dst("10.0.2.23", 2))},
			ops: []string{
				"create service tcp/198.18.0.10:80 scheduler wlc (new)",
				"add destination tcp/198.18.0.10:80 -> 10.0.2.21:80 dr weight 1 (new)",
				"add destination tcp/198.18.0.10:80 -> 10.0.2.22:80 dr weight 1 (new)",
				"add destination tcp/198.18.0.10:80 -> 10.0.2.23:80 dr weight 2 (new)",
			},
		},
		{
			name: "create mh binds the scheduler after the destinations",
			want: []Service{mhPortFallback(svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 1)))},
			ops: []string{
				"create service tcp/198.18.0.10:80 scheduler none flags flag-1,flag-2 (new; scheduler mh bound after the destinations)",
				"add destination tcp/198.18.0.10:80 -> 10.0.2.21:80 dr weight 1 (new)",
				"add destination tcp/198.18.0.10:80 -> 10.0.2.22:80 dr weight 1 (new)",
				"update service tcp/198.18.0.10:80 scheduler mh flags mh-fallback,mh-port (bind scheduler mh: one table build)",
			},
		},
		{
			name: "create mh with one destination binds it at once",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1))},
			ops: []string{
				"create service tcp/198.18.0.10:80 scheduler mh (new)",
				"add destination tcp/198.18.0.10:80 -> 10.0.2.21:80 dr weight 1 (new)",
			},
		},
		{
			name: "create ipv6",
			want: []Service{svc(v6, "mh", Destination{Address: netip.MustParseAddr("2001:db8::21"), Port: 443, Weight: 1, Forwarding: DirectRoute})},
			ops: []string{
				"create service tcp/[2001:db8::10]:443 scheduler mh (new)",
				"add destination tcp/[2001:db8::10]:443 -> [2001:db8::21]:443 dr weight 1 (new)",
			},
		},
		{
			name: "in sync in canonical order: nothing",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1))},
			have: []Service{svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 1))},
		},
		{
			name: "service not wanted is deleted",
			have: []Service{svc(web, "mh", dst("10.0.2.21", 1))},
			ops:  []string{"delete service tcp/198.18.0.10:80 (not in configuration)"},
		},
		{
			name: "scheduler change updates in place",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1))},
			have: []Service{svc(web, "wlc", dst("10.0.2.21", 1))},
			ops:  []string{"update service tcp/198.18.0.10:80 scheduler mh (scheduler wlc -> mh)"},
		},
		{
			name: "flag added",
			want: []Service{mhPort},
			have: []Service{svc(web, "mh", dst("10.0.2.21", 1))},
			ops:  []string{"update service tcp/198.18.0.10:80 scheduler mh flags mh-port (flags [] -> [mh-port])"},
		},
		{
			name: "generic flag name equals the scheduler's name",
			want: []Service{flag2},
			have: []Service{mhPort},
		},
		{
			name: "persistence",
			want: []Service{persistent},
			have: []Service{svc(web, "wlc", dst("10.0.2.21", 1))},
			ops:  []string{"update service tcp/198.18.0.10:80 scheduler wlc persistence 5m0s (persistence 0s -> 5m0s)"},
		},
		{
			name: "weight change",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 3))},
			have: []Service{svc(web, "mh", dst("10.0.2.21", 1))},
			ops:  []string{"update destination tcp/198.18.0.10:80 -> 10.0.2.21:80 dr weight 3 (weight 1 -> 3)"},
		},
		{
			name: "forwarding change",
			want: []Service{nat},
			have: []Service{svc(web, "mh", dst("10.0.2.21", 1))},
			ops:  []string{"update destination tcp/198.18.0.10:80 -> 10.0.2.21:80 nat weight 1 (forwarding dr -> nat)"},
		},
		{
			name: "removed destination is deleted, order kept",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.23", 1))},
			have: []Service{svc(web, "mh", dst("10.0.2.23", 1), dst("10.0.2.22", 1), dst("10.0.2.21", 1))},
			ops:  []string{"delete destination tcp/198.18.0.10:80 -> 10.0.2.22:80 (not in configuration)"},
		},
		{
			name: "new highest address lands at the head: one add",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1), dst("10.0.2.23", 1))},
			have: []Service{svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 1))},
			ops:  []string{"add destination tcp/198.18.0.10:80 -> 10.0.2.23:80 dr weight 1 (new)"},
		},
		{
			name: "new address in the middle: re-insert those before it",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1), dst("10.0.2.23", 1))},
			have: []Service{svc(web, "mh", dst("10.0.2.23", 1), dst("10.0.2.21", 1))},
			ops: []string{
				"add destination tcp/198.18.0.10:80 -> 10.0.2.22:80 dr weight 1 (new)",
				"delete destination tcp/198.18.0.10:80 -> 10.0.2.23:80 (canonical order)",
				"add destination tcp/198.18.0.10:80 -> 10.0.2.23:80 dr weight 1 (canonical order)",
			},
		},
		{
			name: "adopted list in ascending order is made canonical",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1), dst("10.0.2.23", 1))},
			have: []Service{svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1), dst("10.0.2.23", 1))},
			ops: []string{
				"delete destination tcp/198.18.0.10:80 -> 10.0.2.22:80 (canonical order)",
				"add destination tcp/198.18.0.10:80 -> 10.0.2.22:80 dr weight 1 (canonical order)",
				"delete destination tcp/198.18.0.10:80 -> 10.0.2.23:80 (canonical order)",
				"add destination tcp/198.18.0.10:80 -> 10.0.2.23:80 dr weight 1 (canonical order)",
			},
		},
		{
			name: "draining with connections is held at weight 0",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), draining(dst("10.0.2.22", 1)))},
			have: []Service{svc(web, "mh", withConns(dst("10.0.2.22", 1), 2, 1), dst("10.0.2.21", 1))},
			ops:  []string{"update destination tcp/198.18.0.10:80 -> 10.0.2.22:80 dr weight 0 (weight 1 -> 0 (draining))"},
		},
		{
			name: "draining with inactive connections only is still held",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), draining(dst("10.0.2.22", 1)))},
			have: []Service{svc(web, "mh", withConns(dst("10.0.2.22", 0), 0, 4), dst("10.0.2.21", 1))},
		},
		{
			name: "drained destination is deleted",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), draining(dst("10.0.2.22", 1)))},
			have: []Service{svc(web, "mh", dst("10.0.2.22", 0), dst("10.0.2.21", 1))},
			ops:  []string{"delete destination tcp/198.18.0.10:80 -> 10.0.2.22:80 (drained: no connections left)"},
		},
		{
			name: "draining before its deadline is held with its connections",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), drainingUntil(dst("10.0.2.22", 1), t0.Add(time.Second)))},
			have: []Service{svc(web, "mh", withConns(dst("10.0.2.22", 0), 3, 0), dst("10.0.2.21", 1))},
		},
		{
			name: "draining past its deadline is deleted with its connections",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), drainingUntil(dst("10.0.2.22", 1), t0))},
			have: []Service{svc(web, "mh", withConns(dst("10.0.2.22", 0), 3, 1), dst("10.0.2.21", 1))},
			ops:  []string{"delete destination tcp/198.18.0.10:80 -> 10.0.2.22:80 (drain deadline passed with 4 connections left)"},
		},
		{
			name: "draining destination absent in the kernel is not created",
			want: []Service{svc(web, "mh", dst("10.0.2.21", 1), draining(dst("10.0.2.22", 1)))},
			have: []Service{svc(web, "mh", dst("10.0.2.21", 1))},
		},
		{
			name: "invalid service produces no ops, not even a delete",
			want: []Service{invalid},
			have: []Service{svc(web, "mh", dst("10.0.2.21", 1))},
		},
		{
			name: "services are planned in key order",
			want: []Service{svc(Key{VIP: netip.MustParseAddr("198.18.0.11"), Port: 80, Protocol: 6}, "rr"), svc(web, "rr")},
			ops: []string{
				"create service tcp/198.18.0.10:80 scheduler rr (new)",
				"create service tcp/198.18.0.11:80 scheduler rr (new)",
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := opLines(Diff(tc.want, tc.have, t0))
			if diff := cmp.Diff(tc.ops, got); diff != "" {
				t.Errorf("Diff ops (-want +got):\n%s", diff)
			}
		})
	}
}

func TestValidate(t *testing.T) {
	ok := svc(web, "mh", dst("10.0.2.21", 1))
	tests := []struct {
		name string
		s    Service
		errs []string // substrings, all must appear
	}{
		{name: "valid", s: ok},
		{name: "no vip", s: svc(Key{Port: 80, Protocol: 6}, "mh"), errs: []string{"vip: missing address"}},
		{name: "bad protocol and scheduler", s: svc(Key{VIP: web.VIP, Port: 80, Protocol: 1}, ""), errs: []string{"protocol 1", "scheduler: empty"}},
		{name: "flag of another scheduler", s: Service{Key: web, Scheduler: "wlc", Flags: []string{"mh-port"}}, errs: []string{`flag "mh-port" is not valid for scheduler "wlc"`}},
		{name: "ops on tcp", s: Service{Key: web, Scheduler: "rr", Flags: []string{"ops"}}, errs: []string{"udp services only"}},
		{name: "sub-second persistence", s: Service{Key: web, Scheduler: "rr", Persistence: 1500 * time.Millisecond}, errs: []string{"whole seconds"}},
		{name: "weight and duplicate", s: svc(web, "mh", dst("10.0.2.21", -1), dst("10.0.2.21", 1)), errs: []string{"weight -1", "listed twice"}},
		{name: "family mismatch", s: svc(web, "mh", Destination{Address: netip.MustParseAddr("2001:db8::1"), Weight: 1, Forwarding: DirectRoute}), errs: []string{"address family differs"}},
		{name: "mapped address", s: svc(web, "mh", Destination{Address: netip.MustParseAddr("::ffff:10.0.2.21"), Weight: 1, Forwarding: DirectRoute}), errs: []string{"plain IPv4"}},
		{name: "no forwarding", s: svc(web, "mh", Destination{Address: netip.MustParseAddr("10.0.2.21"), Weight: 1}), errs: []string{"forwarding forwarding(0)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := Validate(tc.s)
			if len(tc.errs) == 0 {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate = nil, want errors %q", tc.errs)
			}
			for _, e := range tc.errs {
				if !strings.Contains(err.Error(), e) {
					t.Errorf("Validate = %q, want it to contain %q", err, e)
				}
			}
		})
	}
}

func TestFlags(t *testing.T) {
	tests := []struct {
		sched string
		names []string
		bits  uint32
		back  []string
	}{
		{"mh", []string{"mh-port", "mh-fallback"}, flagSched1 | flagSched2, []string{"mh-fallback", "mh-port"}},
		{"mh", []string{"flag-2"}, flagSched2, []string{"mh-port"}},
		{"sh", []string{"sh-port"}, flagSched2, []string{"sh-port"}},
		{"sh", []string{"sh-fallback", "flag-3"}, flagSched1 | flagSched3, []string{"flag-3", "sh-fallback"}},
		{"wlc", []string{"flag-1"}, flagSched1, []string{"flag-1"}},
		{"rr", []string{"ops"}, flagOnePacket, []string{"ops"}},
		{"rr", nil, 0, nil},
	}
	for _, tc := range tests {
		t.Run(tc.sched+"/"+strings.Join(tc.names, ","), func(t *testing.T) {
			bits, err := FlagBits(tc.sched, tc.names)
			if err != nil {
				t.Fatal(err)
			}
			if bits != tc.bits {
				t.Errorf("FlagBits = %#x, want %#x", bits, tc.bits)
			}
			// The kernel adds its internal hashed bit; names must ignore it.
			if diff := cmp.Diff(tc.back, FlagNames(tc.sched, bits|flagHashed)); diff != "" {
				t.Errorf("FlagNames (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFingerprint(t *testing.T) {
	base := svc(web, "mh", dst("10.0.2.22", 1), dst("10.0.2.21", 1))
	fp := Fingerprint(base)
	if !strings.HasPrefix(fp, "2/") || len(fp) != 2+16 {
		t.Errorf("Fingerprint = %q, want 2/<16 hex digits>", fp)
	}
	changed := map[string]Service{
		"order":       svc(web, "mh", dst("10.0.2.21", 1), dst("10.0.2.22", 1)),
		"weight":      svc(web, "mh", dst("10.0.2.22", 2), dst("10.0.2.21", 1)),
		"scheduler":   svc(web, "sh", dst("10.0.2.22", 1), dst("10.0.2.21", 1)),
		"destination": svc(web, "mh", dst("10.0.2.23", 1), dst("10.0.2.21", 1)),
	}
	flags := base
	flags.Flags = []string{"mh-port"}
	changed["flags"] = flags
	for name, s := range changed {
		if Fingerprint(s) == fp {
			t.Errorf("changing the %s left the fingerprint at %s", name, fp)
		}
	}
	same := base
	same.Key = Key{VIP: netip.MustParseAddr("198.18.0.99"), Port: 8080, Protocol: 6}
	same.Destinations = []Destination{withConns(dst("10.0.2.22", 1), 5, 5), dst("10.0.2.21", 1)}
	if got := Fingerprint(same); got != fp {
		t.Errorf("key and counters changed the fingerprint: %s, want %s", got, fp)
	}
}

// TestDiffManyDestinations covers services with more destinations than the
// linear lookup handles (the map path).
func TestDiffManyDestinations(t *testing.T) {
	var ds []Destination
	for i := range 40 {
		ds = append(ds, dst(fmt.Sprintf("10.0.3.%d", 100-i), 1))
	}
	ops := Diff([]Service{svc(web, "mh", ds...)}, nil, t0)
	if len(ops) != 42 || ops[1].Destination.Address.String() != "10.0.3.61" || ops[40].Destination.Address.String() != "10.0.3.100" || ops[41].Kind != OpUpdateService {
		t.Fatalf("create with 40 destinations: %d ops, first add %v, last add %v, then %v; want ascending adds, then the scheduler", len(ops), ops[1], ops[40], ops[len(ops)-1])
	}
	have := slices.Clone(ds)
	SortCanonical(have)
	have[3] = withConns(have[3], 1, 0)
	want := slices.Clone(ds)
	want = append(want[:10:10], want[11:]...) // drop 10.0.3.90
	want[0].Draining = true                   // 10.0.3.100, no connections: deleted
	got := opLines(Diff([]Service{svc(web, "mh", want...)}, []Service{svc(web, "mh", have...)}, t0))
	wantOps := []string{
		"delete destination tcp/198.18.0.10:80 -> 10.0.3.100:80 (drained: no connections left)",
		"delete destination tcp/198.18.0.10:80 -> 10.0.3.90:80 (not in configuration)",
	}
	if diff := cmp.Diff(wantOps, got); diff != "" {
		t.Errorf("ops (-want +got):\n%s", diff)
	}
	if err := Validate(svc(web, "mh", append(ds, ds[39])...)); err == nil || !strings.Contains(err.Error(), "destinations[40] 10.0.3.61:80: listed twice") {
		t.Errorf("Validate of a duplicate among 41: %v", err)
	}
}
