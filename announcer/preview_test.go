package announcer

import (
	"net/netip"
	"slices"
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/config"
)

// TestPreviewSaysWhichVerdictsAreKept: a dry run lists, per backend whose
// check changes, whether its verdict carries over (timing only) or starts
// over (what is probed changed); unchanged backends are not listed.
func TestPreviewSaysWhichVerdictsAreKept(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		_, _, l := upLoop(t)
		next := twoServiceConfig()
		next.Services[0].Health.Rise = 4      // web: timing only
		next.Services[1].Health.Type = "http" // api: what is probed
		next.Services[1].Health.Path = "/healthz"
		changes, err := l.Preview(t.Context(), next)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, c := range changes {
			if c.Kind == "health" {
				got = append(got, c.String())
			}
		}
		want := []string{
			"keep   health      web 10.0.2.21:80: verdict up kept: rise 1 -> 4; applies from the next probe",
			"keep   health      web 10.0.2.22:80: verdict up kept: rise 1 -> 4; applies from the next probe",
			`reset  health      api 10.0.2.31:80: what is probed changed (type tcp -> http, path none -> "/healthz"): ` +
				"verdict starts over; the last one holds until the new check's first probe",
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("health lines of the dry run (-want +got):\n%s", diff)
		}
	})
}

// TestPreviewShowsLocalServices: a local service (no IPVS) that a reload
// adds, changes or removes is in the dry run, and so is the route of a new
// VIP that waits for its first verdicts. Adding one used to say "no
// changes".
func TestPreviewShowsLocalServices(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		cfg, _, l := upLoop(t)
		local := webService("dns", "198.18.0.53", 1)
		local.Port, local.Forwarding = 53, config.ForwardLocal
		withLocal := cfg.Clone()
		withLocal.Services = append(withLocal.Services, local)
		changes, err := l.Preview(t.Context(), withLocal)
		if err != nil {
			t.Fatal(err)
		}
		want := []string{
			"add    service     tcp/198.18.0.53:53: local service dns (no IPVS): its VIP is announced while at least 1 of its 1 health targets are up",
			"add    route       198.18.0.53/32: once servable (now: below min_healthy 0/1, 1 not yet checked)",
		}
		if diff := cmp.Diff(want, linesOf(changes, "service", "route")); diff != "" {
			t.Errorf("adding a local service (-want +got):\n%s", diff)
		}

		if _, err := l.Reload(t.Context(), withLocal); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		changed := withLocal.Clone()
		changed.Services[2].Backends = []config.Backend{{Address: netip.MustParseAddr("127.0.0.1"), Port: 5353}}
		changes, err = l.Preview(t.Context(), changed)
		if err != nil {
			t.Fatal(err)
		}
		want = []string{"change service     tcp/198.18.0.53:53: local service dns: health targets [198.18.0.53:53] -> [127.0.0.1:5353]"}
		if diff := cmp.Diff(want, linesOf(changes, "service")); diff != "" {
			t.Errorf("changing a local service's target (-want +got):\n%s", diff)
		}
		changes, err = l.Preview(t.Context(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		want = []string{"remove service     tcp/198.18.0.53:53: local service dns"}
		if diff := cmp.Diff(want, linesOf(changes, "service")); diff != "" {
			t.Errorf("removing a local service (-want +got):\n%s", diff)
		}
	})
}

// linesOf renders the changes of the given kinds.
func linesOf(changes []Change, kinds ...string) []string {
	var out []string
	for _, c := range changes {
		if slices.Contains(kinds, c.Kind) {
			out = append(out, c.String())
		}
	}
	return out
}
