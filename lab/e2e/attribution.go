package e2e

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/anycast-director/director/lab/nslab"
)

// machineDrops names the BGP sessions the router lost during an operation
// that directord did not end: sessions of directors the operation left
// alone (not in touched; directorAddr maps directors to their session
// addresses) that dropped for a reason other than a
// NOTIFICATION from the director (BFD down, hold timer). On this project's
// shared two-core machine the emulated lab's BFD sessions have dropped by
// themselves under load; such a drop moves the route and fails requests
// whatever directord does, so the operation's figures are then reported,
// not asserted. A session that directord closed (a NOTIFICATION received
// by the router) is never the machine's doing.
func machineDrops(before, after map[string]nslab.BGPNeighbor, directorAddr map[string]string, touched []string) []string {
	var out []string
	for d, addr := range directorAddr {
		if slices.Contains(touched, d) {
			continue
		}
		b, a := before[addr], after[addr]
		if a.Dropped <= b.Dropped || strings.Contains(a.LastReset, "Notification received") {
			continue
		}
		out = append(out, fmt.Sprintf("%s: %d drops (last: %s)", d, a.Dropped-b.Dropped, a.LastReset))
	}
	sort.Strings(out)
	return out
}
