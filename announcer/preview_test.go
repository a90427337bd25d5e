package announcer

import (
	"testing"
	"testing/synctest"

	"github.com/google/go-cmp/cmp"
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
