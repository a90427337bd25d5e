package nslab

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"
)

// markerTable is the routing table of the marker routes a RouteWatch adds
// to know what it has read: no rule points at it, so they route nothing.
const markerTable = "4242"

// RouteWatch records a node's route changes as `ip monitor route` reports
// them, each line stamped with the time this process read it: how a FIB
// changes, without polling.
type RouteWatch struct {
	node *Node
	proc *Proc
	seq  int // marker routes added so far

	mu     sync.Mutex
	start  int // first line after the subscription was confirmed
	cursor int // lines handed out by WaitLine
}

// RouteEvent is one route change.
type RouteEvent struct {
	// At is when the change's first line was read.
	At time.Time
	// Deleted is true for a removed route; otherwise the route was added
	// or replaced with what Text says.
	Deleted bool
	// Dst is the destination as ip prints it ("198.18.0.10", "default").
	Dst string
	// Text is the change as ip printed it, continuation lines (the next
	// hops of an ECMP route) included.
	Text string
}

// Gateways returns the "via" addresses of the change, in the order printed.
func (e RouteEvent) Gateways() []string {
	var out []string
	f := strings.Fields(e.Text)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "via" {
			out = append(out, f[i+1])
		}
	}
	return out
}

// routeTypes are the route types ip prints before a destination.
var routeTypes = map[string]bool{"unicast": true, "local": true, "broadcast": true, "multicast": true,
	"unreachable": true, "blackhole": true, "prohibit": true, "throw": true, "anycast": true, "nat": true}

// parseRouteLine reads the first line of a change.
func parseRouteLine(l Line) RouteEvent {
	e := RouteEvent{At: l.At, Text: l.Text}
	f := strings.Fields(l.Text)
	if len(f) > 0 && f[0] == "Deleted" {
		e.Deleted = true
		f = f[1:]
	}
	if len(f) > 0 && routeTypes[f[0]] {
		f = f[1:]
	}
	if len(f) > 0 {
		e.Dst = f[0]
	}
	return e
}

// samePrefix reports whether two destinations name the same prefix
// ("198.18.0.10" and "198.18.0.10/32" do).
func samePrefix(a, b string) bool {
	pa, errA := parsePrefix(a)
	pb, errB := parsePrefix(b)
	if errA != nil || errB != nil {
		return a == b
	}
	return pa == pb
}

func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p.Masked(), err
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, a.BitLen()), nil
}

// WatchRoutes starts `ip monitor route` in the node and returns once it is
// subscribed: every route change from then on is recorded.
func (n *Node) WatchRoutes(ctx context.Context) (*RouteWatch, error) {
	p, err := n.Start("ip-monitor", nil, "ip", "monitor", "route")
	if err != nil {
		return nil, err
	}
	w := &RouteWatch{node: n, proc: p}
	next, err := w.Sync(ctx)
	if err != nil {
		p.Kill()
		return nil, fmt.Errorf("watch the routes of %s: %w", n.Name, err)
	}
	w.start, w.cursor = next, next
	return w, nil
}

// Sync returns once every route change made before the call has been read,
// with the number of lines read by then. It adds and deletes a marker route
// in a table nothing uses and waits for both to be reported: the kernel
// reports changes in order. Until the monitor has subscribed, the marker
// goes unseen and is tried again.
func (w *RouteWatch) Sync(ctx context.Context) (int, error) {
	w.mu.Lock()
	w.seq++
	marker := fmt.Sprintf("240.0.%d.%d", (w.seq>>8)&0xff, w.seq&0xff)
	w.mu.Unlock()
	from := w.proc.LineCount()
	deadline := time.Now().Add(10 * time.Second)
	for attempt := 0; ; attempt++ {
		if _, err := run(ctx, "ip", "-n", w.node.NetNS, "route", "replace", "unreachable", marker+"/32", "table", markerTable); err != nil {
			return 0, err
		}
		_, i, err := w.proc.WaitOutput(marker, from, time.Duration(50*(attempt+1))*time.Millisecond)
		if _, derr := run(ctx, "ip", "-n", w.node.NetNS, "route", "del", "unreachable", marker+"/32", "table", markerTable); derr != nil {
			return 0, derr
		}
		if err == nil {
			if _, i, err = w.proc.WaitOutput("Deleted unreachable "+marker, i+1, 10*time.Second); err != nil {
				return 0, err
			}
			return i + 1, nil
		}
		if w.proc.Exited() || time.Now().After(deadline) {
			return 0, fmt.Errorf("ip monitor did not report a marker route: %w", err)
		}
		from = w.proc.LineCount()
	}
}

// isMarker reports whether a line is about a marker route.
func isMarker(text string) bool {
	return strings.Contains(text, "table "+markerTable)
}

// Events returns the changes recorded so far whose destination is prefix
// (every change for ""), marker routes left out. A change whose next hops
// are still being printed may lack its last lines: Sync first when that
// matters.
func (w *RouteWatch) Events(prefix string) []RouteEvent {
	return w.eventsFrom(w.start, -1, prefix)
}

// eventsFrom groups lines [from, to) (to -1: all) into changes.
func (w *RouteWatch) eventsFrom(from, to int, prefix string) []RouteEvent {
	lines := w.proc.Lines(from)
	if to >= 0 && to-from < len(lines) {
		lines = lines[:max(to-from, 0)]
	}
	var out []RouteEvent
	var cur *RouteEvent
	for _, l := range lines {
		if strings.HasPrefix(l.Text, " ") || strings.HasPrefix(l.Text, "\t") {
			if cur != nil {
				cur.Text += "\n" + l.Text
			}
			continue
		}
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
		if isMarker(l.Text) {
			continue
		}
		e := parseRouteLine(l)
		if prefix == "" || samePrefix(e.Dst, prefix) {
			cur = &e
		}
	}
	if cur != nil {
		out = append(out, *cur)
	}
	return out
}

// Changes runs action and returns the changes of prefix's route (every
// route for "") that happened from its start until it returned and every
// change it caused was read.
func (w *RouteWatch) Changes(ctx context.Context, prefix string, action func() error) ([]RouteEvent, error) {
	from, err := w.Sync(ctx)
	if err != nil {
		return nil, err
	}
	actErr := action()
	to, err := w.Sync(ctx)
	if err != nil {
		return nil, err
	}
	return w.eventsFrom(from, to, prefix), actErr
}

// CountRouteChanges watches the node's routes while action runs and returns
// the changes of prefix's route (see RouteWatch.Changes), and action's error.
func CountRouteChanges(ctx context.Context, n *Node, prefix string, action func() error) ([]RouteEvent, error) {
	w, err := n.WatchRoutes(ctx)
	if err != nil {
		return nil, err
	}
	defer w.Stop()
	return w.Changes(ctx, prefix, action)
}

// WaitLine returns the first line not handed out before that contains every
// substring (for example the VIP and "Deleted"), or an error after timeout.
// Lines that do not match are skipped for good.
func (w *RouteWatch) WaitLine(timeout time.Duration, substrs ...string) (Line, error) {
	deadline := time.Now().Add(timeout)
	for {
		w.mu.Lock()
		skip := w.cursor
		w.mu.Unlock()
		left := time.Until(deadline)
		if left <= 0 {
			return Line{}, fmt.Errorf("no route change matching %q within %s", substrs, timeout)
		}
		_, i, err := w.proc.WaitOutput(substrs[0], skip, left)
		if err != nil {
			return Line{}, fmt.Errorf("no route change matching %q within %s", substrs, timeout)
		}
		w.mu.Lock()
		w.cursor = i + 1
		w.mu.Unlock()
		l := w.proc.Lines(i)[0]
		if containsAll(l.Text, substrs) && !isMarker(l.Text) {
			return l, nil
		}
	}
}

// Skip drops every line read so far, so the next WaitLine sees only later
// changes.
func (w *RouteWatch) Skip() {
	n := w.proc.LineCount()
	w.mu.Lock()
	w.cursor = n
	w.mu.Unlock()
}

// Stop ends the monitor; the changes recorded stay readable.
func (w *RouteWatch) Stop() { w.proc.Kill() }

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}
