// Package compare runs keepalived and directord side by side, one after the
// other in the same VM boot, against the same real servers and the same
// virtual services, and measures what each costs and how fast each reacts:
// CPU per completed probe (probes counted at the real servers' listeners),
// RSS, start-up, failure detection and recovery, reload, and stop. `make
// bench-compare` (lab/cmd/benchcompare) runs it and writes BENCH-compare.md.
//
// Equivalent check settings: both probe every backend with a TCP connect
// every Interval with a Timeout. keepalived has no rise count: one good probe
// brings a failed real server back, so directord runs with rise 1.
// directord's fall F (F failed probes in a row, Interval apart) is
// keepalived's `retry F-1` with `delay_before_retry Interval` (a failed
// connect is retried F-1 times, Interval apart, before the server is failed).
// A failed real server stays in IPVS at weight 0 in both (keepalived's
// `inhibit_on_failure`, directord's drain). Neither removes its IPVS services
// when it stops (keepalived's `--dont-release-ipvs`, directord's default), and
// directord's graceful shutdown and linger are 0: with nothing announced to a
// router they would only wait.
package compare

import (
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// Daemon names one of the two programs compared.
type Daemon string

// The programs compared.
const (
	Keepalived Daemon = "keepalived"
	Directord  Daemon = "directord"
)

// Scenario is one configuration both daemons run.
type Scenario struct {
	// Services is the number of virtual services (N).
	Services int
	// RealServers is the number of real servers; every service has all of them.
	RealServers int
	// Shared makes every service probe the same targets (each real server on
	// port 80); otherwise service i probes its own port on every real server,
	// so there are Services x RealServers distinct targets.
	Shared bool
	// Interval, Timeout and Fall are the check settings (rise is 1).
	Interval, Timeout time.Duration
	Fall              int
}

// Name is the scenario's label in reports, e.g. "N=100 distinct".
func (s Scenario) Name() string {
	kind := "distinct"
	if s.Shared {
		kind = "shared"
	}
	return fmt.Sprintf("N=%d %s", s.Services, kind)
}

// Targets is how many distinct (address, port) pairs a deduplicating checker probes.
func (s Scenario) Targets() int {
	if s.Shared {
		return s.RealServers
	}
	return s.Services * s.RealServers
}

// Demanded is the probe rate per second a daemon must sustain to probe every
// target it has once per interval: keepalived probes each service's real
// servers separately, directord each distinct target once.
func (s Scenario) Demanded(d Daemon) float64 {
	n := s.Services * s.RealServers
	if d == Directord {
		n = s.Targets()
	}
	return float64(n) / s.Interval.Seconds()
}

// The addresses: the director is DirectorAddr on a bridge, real server j is
// RealServerAddr(j), service i's VIP is VIP(i).
var (
	// DirectorAddr is the director's address on the real servers' bridge.
	DirectorAddr = netip.MustParseAddr("198.18.0.1")
	netPrefix    = 24
)

// RealServerAddr is real server j's address (j from 0).
func RealServerAddr(j int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 18, 0, byte(11 + j)})
}

// VIP is service i's virtual address (i from 0): 198.19.x.y, avoiding .0 and .255.
func VIP(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{198, 19, byte(1 + i/200), byte(1 + i%200)})
}

// Port is service i's port, which is also the port its backends are probed on.
func (s Scenario) Port(i int) uint16 {
	if s.Shared {
		return 80
	}
	return uint16(10000 + i)
}

// Ports lists the ports every real server listens on.
func (s Scenario) Ports() []uint16 {
	if s.Shared {
		return []uint16{80}
	}
	out := make([]uint16, s.Services)
	for i := range out {
		out[i] = s.Port(i)
	}
	return out
}

// Weights gives each real server's weight in every service (index j).
type Weights []int

// KeepalivedConfig renders keepalived.conf for s with weights w.
func (s Scenario) KeepalivedConfig(w Weights) string {
	var b strings.Builder
	b.WriteString("global_defs {\n  router_id bench\n}\n")
	for i := range s.Services {
		fmt.Fprintf(&b, "virtual_server %s %d {\n  delay_loop %s\n  lb_algo mh\n  mh-port\n  mh-fallback\n  lb_kind DR\n  protocol TCP\n",
			VIP(i), s.Port(i), seconds(s.Interval))
		for j := range s.RealServers {
			fmt.Fprintf(&b, "  real_server %s %d {\n    weight %d\n    inhibit_on_failure\n    TCP_CHECK {\n      connect_timeout %s\n      retry %d\n      delay_before_retry %s\n    }\n  }\n",
				RealServerAddr(j), s.Port(i), w[j], seconds(s.Timeout), s.Fall-1, seconds(s.Interval))
		}
		b.WriteString("}\n")
	}
	return b.String()
}

// DirectordConfig renders directord's YAML for s with weights w; dir holds
// its socket and state.
func (s Scenario) DirectordConfig(w Weights, dir string) string {
	var b strings.Builder
	fmt.Fprintf(&b, `director:
  name: bench
  announce: none
  graceful_shutdown: 0s
  linger: 0s
  state_dir: %s/state
api:
  socket: %s/directord.sock
metrics:
  listen: ""
services:
`, dir, dir)
	for i := range s.Services {
		fmt.Fprintf(&b, "  - name: s%d\n    vip: %s\n    port: %d\n    forwarding: dr\n    scheduler: mh\n    scheduler_flags: [mh-port, mh-fallback]\n",
			i, VIP(i), s.Port(i))
		fmt.Fprintf(&b, "    health: { type: tcp, interval: %s, timeout: %s, rise: 1, fall: %d }\n    backends:\n",
			s.Interval, s.Timeout, s.Fall)
		for j := range s.RealServers {
			fmt.Fprintf(&b, "      - { address: %s, weight: %d }\n", RealServerAddr(j), w[j])
		}
	}
	return b.String()
}

// seconds renders d the way keepalived reads durations: decimal seconds.
func seconds(d time.Duration) string {
	return strings.TrimSuffix(strings.TrimRight(fmt.Sprintf("%.3f", d.Seconds()), "0"), ".")
}
