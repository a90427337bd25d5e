// Package buildinfo says which build of directord and directorctl is running:
// the semantic version (from the git tag, v0.x.y until the first release),
// the commit, the Go version and the build date. `make build` stamps them with
// -ldflags -X (scripts/version.sh computes them); a `go install` build fills
// in what the Go toolchain recorded (the module version and, when built from a
// checkout, the VCS revision and commit time).
package buildinfo

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Set at link time by `make build`:
//
//	-X github.com/anycast-director/director/internal/buildinfo.version=v0.1.2
//	-X github.com/anycast-director/director/internal/buildinfo.commit=<full hash>
//	-X github.com/anycast-director/director/internal/buildinfo.date=<RFC 3339>
//
// They are strings because -X only sets string variables; nothing writes
// them at run time.
var (
	version string
	commit  string
	date    string
)

// unknown is printed for a field no build step recorded.
const unknown = "unknown"

// Info describes one build.
type Info struct {
	// Version is the semantic version: the tag (v0.3.1), a development build
	// after it (v0.3.1-4-gabcdef123456), or v0.0.0-N-gHASH before any tag.
	Version string
	// Commit is the full git commit hash, "unknown" if not recorded.
	Commit string
	// GoVersion is the Go toolchain that built the binary (go1.26.8).
	GoVersion string
	// Date is when the binary was built (RFC 3339, UTC); for a `go install`
	// build, the commit time if the toolchain recorded it.
	Date string
	// Platform is GOOS/GOARCH.
	Platform string
}

// Get returns the running binary's build information.
func Get() Info {
	return resolve(version, commit, date, readBuildInfo())
}

// readBuildInfo is debug.ReadBuildInfo without the ok flag.
func readBuildInfo() *debug.BuildInfo {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return nil
	}
	return bi
}

// resolve fills the stamped values, falling back on what the toolchain
// recorded in bi (nil when it recorded nothing).
func resolve(ver, rev, when string, bi *debug.BuildInfo) Info {
	in := Info{Version: ver, Commit: rev, Date: when, GoVersion: runtime.Version(),
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi != nil {
		in.GoVersion = bi.GoVersion
		settings := map[string]string{}
		for _, s := range bi.Settings {
			settings[s.Key] = s.Value
		}
		if in.Version == "" && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
			in.Version = bi.Main.Version
		}
		if in.Commit == "" {
			in.Commit = settings["vcs.revision"]
			if in.Commit != "" && settings["vcs.modified"] == "true" {
				in.Commit += "-dirty"
			}
		}
		if in.Date == "" {
			in.Date = settings["vcs.time"]
		}
	}
	if in.Version == "" {
		in.Version = "v0.0.0-dev"
	}
	if in.Commit == "" {
		in.Commit = unknown
	}
	if in.Date == "" {
		in.Date = unknown
	}
	return in
}

// String is the multi-line form `PROGRAM --version` prints after the name.
func (in Info) String() string {
	return fmt.Sprintf("%s\n  commit:     %s\n  built:      %s\n  go version: %s %s\n",
		in.Version, in.Commit, in.Date, in.GoVersion, in.Platform)
}
