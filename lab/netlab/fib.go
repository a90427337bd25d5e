package netlab

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
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

// Routes returns the namespace's main-table routes for exactly prefix
// ("198.18.0.10" or "2001:db8::10/128").
func (ns *NS) Routes(prefix string) ([]Route, error) {
	args := []string{"ip", "-j"}
	if strings.Contains(prefix, ":") {
		args = append(args, "-6")
	}
	args = append(args, "-n", ns.Name, "route", "show", prefix)
	out, err := runCmd(args...)
	if err != nil {
		return nil, err
	}
	var rs []Route
	if strings.TrimSpace(out) == "" {
		return nil, nil
	}
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		return nil, fmt.Errorf("decode routes of %s in %s: %w", prefix, ns.Name, err)
	}
	return rs, nil
}

// Gateways returns the sorted next hops of the route to prefix; none when
// there is no route.
func (ns *NS) Gateways(prefix string) ([]string, error) {
	rs, err := ns.Routes(prefix)
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

// CountRoutes counts the namespace's IPv4 (or IPv6) main-table routes of a
// protocol ("bgp", "ospf", ...). It reads plain text: one line per route
// (ECMP next hops are indented continuation lines).
func (ns *NS) CountRoutes(v6 bool, protocol string) (int, error) {
	fam := "-4"
	if v6 {
		fam = "-6"
	}
	out, err := runCmd("ip", fam, "-n", ns.Name, "route", "show", "proto", protocol)
	if err != nil {
		return 0, err
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if line != "" && !strings.HasPrefix(line, "\t") && !strings.HasPrefix(line, " ") {
			n++
		}
	}
	return n, nil
}

// RouteMonitor streams the namespace's route changes (`ip monitor route`),
// stamped with the time this process read them. It measures how fast a FIB
// changes without polling.
type RouteMonitor struct {
	proc *Proc
	mu   sync.Mutex
	seen int // lines already handed out by Next
}

// MonitorRoutes starts `ip monitor route` in the namespace.
func (ns *NS) MonitorRoutes() *RouteMonitor {
	ns.lab.t.Helper()
	p := ns.Start(ns.Short+"/ip-monitor", nil, "ip", "monitor", "route")
	return &RouteMonitor{proc: p}
}

// Wait returns the first line not handed out before that contains every
// substring (for example the VIP and "Deleted"), or an error after timeout.
// Lines that do not match are skipped for good.
func (m *RouteMonitor) Wait(timeout time.Duration, substrs ...string) (string, time.Time, error) {
	deadline := time.Now().Add(timeout)
	for {
		m.mu.Lock()
		skip := m.seen
		m.mu.Unlock()
		left := time.Until(deadline)
		if left <= 0 {
			return "", time.Time{}, fmt.Errorf("no route change matching %q within %s", substrs, timeout)
		}
		line, i, err := m.proc.WaitOutput(substrs[0], skip, left)
		now := time.Now()
		if err != nil {
			return "", time.Time{}, fmt.Errorf("no route change matching %q within %s", substrs, timeout)
		}
		m.mu.Lock()
		m.seen = i + 1
		m.mu.Unlock()
		if containsAll(line, substrs) {
			return line, now, nil
		}
	}
}

// Skip drops every line read so far, so the next Wait sees only later changes.
func (m *RouteMonitor) Skip() {
	m.proc.mu.Lock()
	n := len(m.proc.lines)
	m.proc.mu.Unlock()
	m.mu.Lock()
	m.seen = n
	m.mu.Unlock()
}

func containsAll(s string, subs []string) bool {
	for _, sub := range subs {
		if !strings.Contains(s, sub) {
			return false
		}
	}
	return true
}

// CPUTime returns the user plus system CPU time a process has used so far
// (from /proc/PID/stat, in USER_HZ=100 ticks).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may contain spaces; fields after its
	// closing parenthesis are fixed: utime and stime are 14 and 15.
	s := string(b)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(rest) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(rest[11], 10, 64)
	stime, err2 := strconv.ParseInt(rest[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: utime %q stime %q", pid, rest[11], rest[12])
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// runCmd runs a command in the root namespace and returns its stdout.
func runCmd(args ...string) (string, error) {
	cmd := exec.Command(args[0], args[1:]...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}
