package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"
)

func TestResolve(t *testing.T) {
	installed := &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.3.1"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "abc123"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"},
			{Key: "vcs.modified", Value: "true"}}}
	cases := []struct {
		name             string
		ver, rev, when   string
		bi               *debug.BuildInfo
		wantVer, wantRev string
		wantDate, wantGo string
	}{
		{"stamped by make", "v0.2.0-3-gdeadbeef", "deadbeef", "2026-12-07T08:00:00Z", installed,
			"v0.2.0-3-gdeadbeef", "deadbeef", "2026-12-07T08:00:00Z", "go1.26.8"},
		{"go install of a tag", "", "", "", installed, "v0.3.1", "abc123-dirty", "2026-12-01T10:00:00Z", "go1.26.8"},
		{"go build in a checkout", "", "", "", &debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "(devel)"}},
			"v0.0.0-dev", "unknown", "unknown", "go1.26.8"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := resolve(c.ver, c.rev, c.when, c.bi)
			if got.Version != c.wantVer || got.Commit != c.wantRev || got.Date != c.wantDate || got.GoVersion != c.wantGo {
				t.Errorf("got %+v, want version %s commit %s date %s go %s", got, c.wantVer, c.wantRev, c.wantDate, c.wantGo)
			}
			for _, part := range []string{c.wantVer, c.wantRev, c.wantDate, c.wantGo} {
				if !strings.Contains(got.String(), part) {
					t.Errorf("String() %q lacks %q", got.String(), part)
				}
			}
		})
	}
}
