package netlab

import (
	"context"
	"time"

	"github.com/anycast-director/director/lab/nslab"
)

// Route is one kernel route as `ip -j route show` prints it.
type Route = nslab.Route

// Routes returns the namespace's main-table routes for exactly prefix
// ("198.18.0.10" or "2001:db8::10/128").
func (ns *NS) Routes(prefix string) ([]Route, error) {
	return ns.node.Routes(context.Background(), prefix)
}

// Gateways returns the sorted next hops of the route to prefix; none when
// there is no route.
func (ns *NS) Gateways(prefix string) ([]string, error) {
	return ns.node.Gateways(context.Background(), prefix)
}

// CountRoutes counts the namespace's IPv4 (or IPv6) main-table routes of a
// protocol ("bgp", "ospf", ...).
func (ns *NS) CountRoutes(v6 bool, protocol string) (int, error) {
	return ns.node.CountRoutes(context.Background(), v6, protocol)
}

// RouteMonitor streams the namespace's route changes (`ip monitor route`),
// stamped with the time this process read them. It measures how fast a FIB
// changes without polling.
type RouteMonitor struct {
	w *nslab.RouteWatch
}

// MonitorRoutes starts `ip monitor route` in the namespace and returns once
// it is subscribed: every later change is seen.
func (ns *NS) MonitorRoutes() *RouteMonitor {
	ns.t.Helper()
	w, err := ns.node.WatchRoutes(context.Background())
	if err != nil {
		ns.t.Fatalf("netlab: %v", err)
	}
	return &RouteMonitor{w: w}
}

// Wait returns the first line not handed out before that contains every
// substring (for example the VIP and "Deleted") and when it was read, or an
// error after timeout. Lines that do not match are skipped for good.
func (m *RouteMonitor) Wait(timeout time.Duration, substrs ...string) (string, time.Time, error) {
	l, err := m.w.WaitLine(timeout, substrs...)
	return l.Text, l.At, err
}

// Skip drops every line read so far, so the next Wait sees only later changes.
func (m *RouteMonitor) Skip() { m.w.Skip() }

// Watch is the route watch behind the monitor (Events, Changes, Sync).
func (m *RouteMonitor) Watch() *nslab.RouteWatch { return m.w }

// RouteChanges runs action and returns the changes of prefix's route in the
// namespace that happened while it ran; action's error fails the test.
func (ns *NS) RouteChanges(prefix string, action func() error) []nslab.RouteEvent {
	ns.t.Helper()
	evs, err := nslab.CountRouteChanges(context.Background(), ns.node, prefix, action)
	if err != nil {
		ns.t.Fatalf("netlab: route changes of %s in %s: %v", prefix, ns.Short, err)
	}
	return evs
}
