package config

import (
	"net/netip"
	"time"
)

// Every default of the configuration lives in this file, each with the reason
// for its value. docs/configuration.md documents the same values; the tests in
// defaults_test.go check that a minimal file expands to exactly these.

// Director defaults.
const (
	// DefaultVIPInterface: lo exists on every Linux host and never goes down, so
	// VIPs bound there survive link flaps; a dummy device is the alternative
	// where the kernel has one.
	DefaultVIPInterface = "lo"
	// DefaultHoldDown: a VIP must stay servable this long before it is
	// announced, so a backend flapping around min_healthy does not make the
	// routers re-hash flows every few seconds. Short, because a director that
	// can serve should take traffic soon.
	DefaultHoldDown = 1 * time.Second
	// DefaultDrainDelay: a failing or removed backend stays in IPVS at weight 0
	// this long so established connections can finish, covering short
	// request/response traffic without keeping dead servers around for long.
	DefaultDrainDelay = 10 * time.Second
	// DefaultResyncInterval: the level-triggered reconcile pass repairs drift
	// (someone ran ipvsadm, a route vanished) within seconds at a negligible
	// cost of a few netlink dumps.
	DefaultResyncInterval = 5 * time.Second
	// DefaultMaxFailedResyncs: after three failed passes (15 s with the
	// default interval) the loop withdraws every VIP; one or two failures can be
	// a transient netlink error, three mean the director is not in control.
	DefaultMaxFailedResyncs = 3
	// DefaultGracefulShutdown: VIPs carry GRACEFUL_SHUTDOWN (RFC 8326) this long
	// before the withdraw, time enough for the routers to lower the local
	// preference and move traffic to the other directors (measured with FRR:
	// well under a second per hop) without making restarts slow.
	DefaultGracefulShutdown = 3 * time.Second
	// DefaultLinger: after the withdraw IPVS keeps forwarding this long, for
	// packets already in flight and routers that converge late (a route
	// reflector tier adds a hop or two; FRR alone takes about 60 ms). Flows do
	// not need to finish here: with mh the other directors pick the same real
	// servers, so 2 s is enough and keeps restarts quick.
	DefaultLinger = 2 * time.Second
	// DefaultStateDir: the FHS place for a daemon's persistent state, and
	// what the packaged unit's StateDirectory=directord creates (owned by the
	// service user, kept across reboots and package upgrades).
	DefaultStateDir = "/var/lib/directord"
)

// API, metrics and log defaults.
const (
	// DefaultAPISocket: the FHS place for a daemon's runtime sockets;
	// directorctl uses the same default so both find each other.
	DefaultAPISocket = "/run/directord/directord.sock"
	// DefaultKeepConfigs: ten loaded configurations are plenty to roll back a
	// bad change and cost little memory.
	DefaultKeepConfigs = 10
	// DefaultMetricsListen: loopback only, because metrics reveal topology;
	// 9469 is the project's port (ARCHITECTURE.md). Set an address explicitly
	// to scrape from elsewhere.
	DefaultMetricsListen = "127.0.0.1:9469"
	// DefaultLogFormat: text reads well on a terminal and in journald.
	DefaultLogFormat = "text"
	// DefaultLogLevel: info logs state changes (VIP announced, backend down)
	// but not single probes.
	DefaultLogLevel = "info"
)

// BGP defaults.
const (
	// DefaultBGPPort is the IANA BGP port, both for listening and for peers.
	DefaultBGPPort = 179
	// DefaultHoldTime: 9 s detects a frozen director three times faster than
	// the common 90 s/180 s defaults while surviving a lost keepalive or two;
	// BFD is the way to go lower.
	DefaultHoldTime = 9 * time.Second
	// DefaultRestartTime: routers keep a restarting director's routes 30 s,
	// ten times what directord takes to restart and learn its backends with
	// the default health timers, and short enough that a director whose
	// daemon crashed and stays down leaves the ECMP set within half a minute
	// (docs/operations.md).
	DefaultRestartTime = 30 * time.Second
	// DefaultKeepaliveDivisor: the keepalive defaults to a third of the hold
	// time (RFC 4271's suggestion), 3 s with the default hold time.
	DefaultKeepaliveDivisor = 3
	// DefaultConnectRetry: retry a failed connection every second; GoBGP's
	// and RFC 4271's 120 s would keep a director out of the ECMP set for
	// minutes after a router restart.
	DefaultConnectRetry = 1 * time.Second
	// DefaultIdleHoldAfterReset: GoBGP waits 30 s after a session reset
	// before it reconnects; one second keeps the director out of the ECMP set
	// only as long as the failure lasts.
	DefaultIdleHoldAfterReset = 1 * time.Second
	// DefaultBFDMinInterval and DefaultBFDMultiplier: 300 ms x 3 is FRR's
	// default profile, so a bfd block with no timers matches a router with no
	// BFD tuning; detection under a second.
	DefaultBFDMinInterval = 300 * time.Millisecond
	// DefaultBFDMultiplier: see DefaultBFDMinInterval.
	DefaultBFDMultiplier = 3
)

// Kernel (OSPF through a local routing daemon) defaults.
const (
	// DefaultKernelTable: the main table, which FRR's zebra and BIRD's kernel
	// protocol read without extra configuration (other tables need
	// "ip import-table" in FRR).
	DefaultKernelTable = 254
	// DefaultKernelProtocol: a protocol number of our own that marks the VIP
	// routes and the VIP addresses (IFA_PROTO) as the director's, so it never
	// touches anyone else's; 250 is not used by the kernel (0-4), FRR (11,
	// 186-198), BIRD (12) or keepalived (18).
	DefaultKernelProtocol = 250
)

// IPVS defaults.
const (
	// DefaultManageSysctls: flow continuity behind ECMP needs sloppy_tcp and
	// friends set (see package ipvs); a director that forgets them resets
	// flows whenever the routers re-hash.
	DefaultManageSysctls = true
	// DefaultSyncPort: the kernel's own sync port (IP_VS_SYNC_PORT), which
	// ipvsadm and keepalived use too, so captures and firewall rules that
	// know LVS recognise the traffic.
	DefaultSyncPort = 8848
	// DefaultSyncTTL: sync messages stay on the directors' own segment; a
	// larger TTL is for directors that reach each other through multicast
	// routing only.
	DefaultSyncTTL = 1
)

// DefaultSyncGroup: the kernel's own group (IP_VS_SYNC_GROUP, 224.0.0.81),
// in the link-local block that switches flood without IGMP snooping state.
var DefaultSyncGroup = netip.AddrFrom4([4]byte{224, 0, 0, 81})

// Service defaults.
const (
	// DefaultProtocol: most load-balanced services are TCP.
	DefaultProtocol = TCP
	// DefaultScheduler: Maglev hashing, so every director behind ECMP picks the
	// same real server for a flow without shared state; with flag mh-port (see
	// defaultSchedulerFlags) the source port is hashed too, spreading one
	// client's connections.
	DefaultScheduler = "mh"
	// DefaultForwarding: direct routing; replies go straight from the real
	// server to the client, so the director only carries inbound traffic.
	DefaultForwarding = ForwardDR
	// DefaultMinHealthy: announce a VIP as soon as one healthy backend can
	// serve it; raise it to keep a nearly empty director out of the ECMP set.
	DefaultMinHealthy = 1
	// DefaultWeight: equal weights, the same on every director, keep the
	// Maglev tables identical across directors.
	DefaultWeight = 1
)

// Health check defaults.
const (
	// DefaultCheckType: a TCP connect works against any TCP service.
	DefaultCheckType = CheckTCP
	// DefaultCheckInterval: 2 s with fall 3 detects a dead backend in about 6 s
	// at a load of half a probe per second per backend.
	DefaultCheckInterval = 2 * time.Second
	// DefaultCheckTimeout: a healthy backend answers a probe well within 1 s.
	// When the interval is shorter than 2 s the default timeout is half the
	// interval instead, so an explicit short interval never trips the
	// "timeout must be shorter than interval" rule by itself.
	DefaultCheckTimeout = 1 * time.Second
	// DefaultRise: two passing probes before a backend takes traffic, so a
	// server that accepts one connection while starting up is not trusted yet.
	DefaultRise = 2
	// DefaultFall: three failed probes before a backend is taken out, so one
	// lost packet does not drain it.
	DefaultFall = 3
	// DefaultHTTPMethod: GET is what every web server answers.
	DefaultHTTPMethod = "GET"
	// DefaultHTTPPath: "/" exists on every web server; set a real health
	// endpoint.
	DefaultHTTPPath = "/"
	// DefaultTLSVerify: off, because backends usually carry a certificate for
	// the public name, not their own address; a health probe sends no
	// secrets. Turn it on with tls_server_name set.
	DefaultTLSVerify = false
	// DefaultDNSQueryType: an A question is answered by every resolver.
	DefaultDNSQueryType = "A"
	// DefaultDNSRCode: a healthy server answers NOERROR.
	DefaultDNSRCode = "NOERROR"
)

// defaultSchedulerFlags returns the flags a scheduler gets when the service
// sets none. For mh: mh-port, so the whole 5-tuple picks the server and one
// client's connections spread over all backends; and mh-fallback, so a new
// flow that hashes to a draining (weight 0) or failed backend moves on to the
// next slot instead of being dropped (measured in the VM: with one of four
// backends at weight 0 and no fallback, 61 of 256 new flows found no server).
// The fallback walks the same table on every director, so they still agree.
// Nothing for the other schedulers.
func defaultSchedulerFlags(scheduler string) []string {
	if scheduler == "mh" {
		return []string{"mh-fallback", "mh-port"}
	}
	return nil
}

// defaultExpectStatus returns the accepted HTTP status codes when none are
// set: 200 only, because a redirect or a 204 from a health endpoint usually
// means a misconfigured path.
func defaultExpectStatus() []int {
	return []int{200}
}

// defaultAnnounce: with a bgp section the operator clearly wants BGP; without
// one nothing is announced (static routes or a lab).
func defaultAnnounce(hasBGP bool) Announce {
	if hasBGP {
		return AnnounceBGP
	}
	return AnnounceNone
}

// defaultCheckTimeout returns the timeout for a check with the given interval
// (see DefaultCheckTimeout).
func defaultCheckTimeout(interval time.Duration) time.Duration {
	if interval < 2*DefaultCheckTimeout {
		return interval / 2
	}
	return DefaultCheckTimeout
}

// defaultKeepalive returns the keepalive for a hold time (see
// DefaultKeepaliveDivisor), in whole seconds as BGP carries them; 0 for a hold
// time of 0 (no keepalives).
func defaultKeepalive(hold time.Duration) time.Duration {
	k := (hold / DefaultKeepaliveDivisor).Truncate(time.Second)
	if k == 0 && hold > 0 {
		k = time.Second
	}
	return k
}

// defaultFamilies: a session carries the family of its own address, the
// common setup (one IPv4 and one IPv6 session per router).
func defaultFamilies(peerIs4 bool) (ipv4, ipv6 bool) {
	return peerIs4, !peerIs4
}
