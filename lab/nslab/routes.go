package nslab

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"
)

// Route is one kernel route as `ip -j route show` prints it.
type Route struct {
	Dst      string `json:"dst"`
	Protocol string `json:"protocol"`
	// Gateway and Dev are set for a single-path route.
	Gateway string `json:"gateway"`
	Dev     string `json:"dev"`
	// NextHops is set for a multipath (ECMP) route.
	NextHops []NextHop `json:"nexthops"`
}

// NextHop is one next hop of a multipath route.
type NextHop struct {
	Gateway string `json:"gateway"`
	Dev     string `json:"dev"`
}

// Gateways returns the route's next-hop addresses, sorted, whether it is a
// single-path or an ECMP route.
func (r Route) Gateways() []string {
	var gws []string
	if r.Gateway != "" {
		gws = append(gws, r.Gateway)
	}
	for _, nh := range r.NextHops {
		gws = append(gws, nh.Gateway)
	}
	slices.Sort(gws)
	return gws
}

// Routes returns the node's main-table routes for exactly prefix
// ("198.18.0.10" or "2001:db8::10/128"), read from outside the node.
func (n *Node) Routes(ctx context.Context, prefix string) ([]Route, error) {
	argv := []string{"ip", "-j"}
	if strings.Contains(prefix, ":") {
		argv = append(argv, "-6")
	}
	argv = append(argv, "-n", n.NetNS, "route", "show", prefix)
	out, err := run(ctx, argv...)
	if err != nil {
		return nil, err
	}
	if strings.TrimSpace(out) == "" {
		return nil, nil
	}
	var rs []Route
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return nil, fmt.Errorf("decode routes of %s in %s: %w: %s", prefix, n.Name, err, out)
	}
	return rs, nil
}

// Gateways returns the sorted next hops of the node's route to prefix; none
// when there is no route.
func (n *Node) Gateways(ctx context.Context, prefix string) ([]string, error) {
	rs, err := n.Routes(ctx, prefix)
	if err != nil {
		return nil, err
	}
	var gws []string
	for _, r := range rs {
		gws = append(gws, r.Gateways()...)
	}
	slices.Sort(gws)
	return gws, nil
}

// WaitGateways polls the node's route to prefix every interval until its
// next hops are exactly want (in any order; none for no route) and returns
// how long that took.
func (n *Node) WaitGateways(ctx context.Context, prefix string, want []string, timeout, interval time.Duration) (time.Duration, error) {
	want = slices.Sorted(slices.Values(want))
	return Wait(ctx, timeout, interval, func() error {
		got, err := n.Gateways(ctx, prefix)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) {
			return fmt.Errorf("next hops of %s in %s are %v, want %v", prefix, n.Name, got, want)
		}
		return nil
	})
}

// CountRoutes counts the node's IPv4 (or IPv6) main-table routes of a
// protocol ("bgp", "ospf", ...). It reads plain text: one line per route
// (ECMP next hops are indented continuation lines).
func (n *Node) CountRoutes(ctx context.Context, v6 bool, protocol string) (int, error) {
	fam := "-4"
	if v6 {
		fam = "-6"
	}
	out, err := run(ctx, "ip", fam, "-n", n.NetNS, "route", "show", "proto", protocol)
	if err != nil {
		return 0, err
	}
	count := 0
	for _, line := range strings.Split(out, "\n") {
		if line != "" && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " ") {
			count++
		}
	}
	return count, nil
}
