//go:build linux && (privileged || vm)

package main

import "fmt"

// nobody is the unprivileged user the least-privilege tests run directord as.
const nobody = 65534

// unitCaps are the capabilities deploy/systemd/directord.service grants.
var unitCaps = []string{"net_admin", "net_raw", "net_bind_service"}

// setprivArgs runs argv as nobody with exactly caps (inheritable, ambient and
// bounding set), as the systemd unit does with User= and AmbientCapabilities=.
func setprivArgs(caps []string, argv ...string) []string {
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	return append([]string{"setpriv", fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody),
		"--clear-groups", "--inh-caps=" + set, "--ambient-caps=" + set, "--bounding-set=" + set}, argv...)
}
