package ipvs

import (
	"fmt"
	"strings"
)

// DescribeDrift says how a service changed between what was programmed (had)
// and what the kernel holds now (now), for the log line of a repair: "service
// deleted", "destination 10.0.1.21:80 weight 1 -> 5", "destinations
// reordered". nil stands for an absent service. It returns "" when nothing
// that Apply programs differs (connection counts are not compared).
func DescribeDrift(had, now *Service) string {
	switch {
	case had == nil && now == nil:
		return ""
	case now == nil:
		return "service deleted"
	case had == nil:
		return "service created"
	}
	var why []string
	if c := serviceChange(*now, *had); c != "" {
		why = append(why, c)
	}
	hadIdx, nowIdx := newDestIndex(had.Destinations), newDestIndex(now.Destinations)
	for _, d := range had.Destinations {
		i := nowIdx.find(d.AddrPort())
		if i < 0 {
			why = append(why, fmt.Sprintf("destination %s deleted", d.AddrPort()))
			continue
		}
		if c := destChange(now.Destinations[i], d); c != "" {
			why = append(why, fmt.Sprintf("destination %s %s", d.AddrPort(), c))
		}
	}
	for _, d := range now.Destinations {
		if hadIdx.find(d.AddrPort()) < 0 {
			why = append(why, fmt.Sprintf("destination %s added", d.AddrPort()))
		}
	}
	if len(why) == 0 && !sameOrder(had.Destinations, now.Destinations) {
		why = append(why, "destinations reordered")
	}
	return strings.Join(why, ", ")
}

// sameOrder reports whether two lists hold the same destinations in the same
// order.
func sameOrder(a, b []Destination) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].AddrPort() != b[i].AddrPort() {
			return false
		}
	}
	return true
}
