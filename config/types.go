// Package config turns a YAML file into a validated, immutable Config.
//
// Loading has two stages: a strict YAML decode into raw structs (unknown keys are
// errors), then validation into typed values (netip.Addr, time.Duration, enums).
// Validation reports every problem at once, each with file, line and field path.
// Defaults live in defaults.go and nowhere else.
package config

import (
	"net/netip"
	"time"

	"github.com/anycast-director/director/health/check"
)

// Config is a validated director configuration. It is immutable once Load or
// Parse returns it: the announcer, the API and the adapters share one value
// across goroutines and reloads without locks, so nothing may modify it (use
// Clone to derive a variant, for example in tests). The helper methods return
// copies for the same reason.
type Config struct {
	// Source is the file the configuration was read from ("" when parsed from bytes).
	Source string
	// Digest is a short SHA-256 of the file's bytes (12 hex digits): the
	// configuration version shown in status, logs and metrics, and the handle
	// for a rollback. Two directors with the same file show the same digest.
	Digest string
	// Content is the file's bytes as loaded: what `configs show` and the
	// console's history show (through Redact) and diff.
	Content []byte
	// Warnings are problems that do not stop the load (a section that the
	// announce mode ignores); the daemon logs them and check-config prints them.
	Warnings []*Error
	// Director holds the identity and the timers of this director.
	Director Director
	// API is where directorctl reaches the daemon.
	API API
	// Metrics is where Prometheus scrapes the daemon.
	Metrics Metrics
	// Log selects the log format and level.
	Log Log
	// BGP is the embedded speaker's configuration; nil when Director.Announce is not bgp.
	BGP *BGP
	// Kernel configures how VIPs are announced through a local routing daemon
	// (Director.Announce == AnnounceKernel, used for OSPF).
	Kernel Kernel
	// IPVS holds the data-plane settings (sysctls).
	IPVS IPVS
	// Services are the load-balanced services, in file order.
	Services []Service
	// Notify sends notifications of state changes (notify.go).
	Notify Notify
}

// Announce says how a VIP reaches the upstream routers.
type Announce int

const (
	// AnnounceBGP advertises VIPs with the embedded GoBGP speaker.
	AnnounceBGP Announce = iota + 1
	// AnnounceKernel advertises a VIP by installing it where a local routing
	// daemon (FRR or BIRD, usually into OSPF) redistributes it.
	AnnounceKernel
	// AnnounceNone programs IPVS and binds VIPs but announces nothing (a lab or a
	// director behind static routes).
	AnnounceNone
)

// String returns the configuration spelling of a.
func (a Announce) String() string {
	switch a {
	case AnnounceBGP:
		return "bgp"
	case AnnounceKernel:
		return "kernel"
	case AnnounceNone:
		return "none"
	}
	return "unknown"
}

// Director is this director's identity and the announcer's timers.
type Director struct {
	// Name identifies the director in logs, status and router configuration.
	Name string
	// VIPInterface is where VIPs are bound locally so IPVS and local services
	// receive their traffic ("lo" or a dummy device).
	VIPInterface string
	// Announce selects how VIPs are announced.
	Announce Announce
	// HoldDown is how long a VIP must be servable before it is announced.
	HoldDown time.Duration
	// DrainDelay is how long a failing or removed backend stays in IPVS at
	// weight 0 before it is deleted.
	DrainDelay time.Duration
	// ResyncInterval is the period of the level-triggered reconcile pass.
	ResyncInterval time.Duration
	// MaxFailedResyncs is how many consecutive resync intervals the loop may fail
	// to reconcile before it withdraws every VIP.
	MaxFailedResyncs int
	// GracefulShutdown is how long VIPs stay announced with the GRACEFUL_SHUTDOWN
	// community (RFC 8326) before they are withdrawn on shutdown or drain.
	GracefulShutdown time.Duration
	// Linger is how long IPVS keeps forwarding after the withdraw on shutdown.
	Linger time.Duration
	// StateDir is the directory for state that must survive a restart or a
	// reboot (systemd's StateDirectory=, /var/lib/directord by default).
	StateDir string
	// VIPBinding is how VIPs are made local: decided at start (auto) or forced.
	VIPBinding VIPBinding
}

// VIPBinding selects how the director makes a VIP local to itself.
type VIPBinding int

const (
	// BindingAuto picks local-route with announce: kernel (a local routing
	// daemon would otherwise see a connected route), else address when the
	// kernel keeps the address protocol mark (IFA_PROTO, Linux 6.1), else
	// local-route.
	BindingAuto VIPBinding = iota
	// BindingAddress binds VIPs as interface addresses marked with IFA_PROTO
	// (Linux 6.1 or later).
	BindingAddress
	// BindingLocalRoute binds VIPs as routes of type local in the kernel's
	// local table, marked with the route protocol (any kernel).
	BindingLocalRoute
)

// String returns the configuration spelling of b.
func (b VIPBinding) String() string {
	switch b {
	case BindingAuto:
		return "auto"
	case BindingAddress:
		return "address"
	case BindingLocalRoute:
		return "local-route"
	}
	return "unknown"
}

// API is the gRPC control endpoint.
type API struct {
	// Socket is the Unix socket path (mode 0600).
	Socket string
	// TCP is an optional mTLS listener; nil when not configured.
	TCP *TCPAPI
	// KeepConfigs is how many loaded configurations are kept for rollback.
	KeepConfigs int
}

// TCPAPI is a TCP listener for the API; it always requires client certificates.
type TCPAPI struct {
	// Listen is host:port.
	Listen string
	// Cert and Key are the server certificate and key (PEM files).
	Cert, Key string
	// ClientCA is the CA bundle that client certificates must chain to.
	ClientCA string
}

// Metrics is the Prometheus endpoint.
type Metrics struct {
	// Listen is host:port; "" disables the endpoint.
	Listen string
}

// Log selects the log output.
type Log struct {
	// Format is "text" or "json".
	Format string
	// Level is "debug", "info", "warn" or "error".
	Level string
}

// BGP configures the embedded speaker.
type BGP struct {
	// ASN is the director's autonomous system number.
	ASN uint32
	// RouterID is the BGP identifier.
	RouterID netip.Addr
	// ListenPort is the TCP port the speaker accepts sessions on; 0 disables listening
	// (then every peer must be active).
	ListenPort uint16
	// ListenAddresses restricts where the speaker listens; empty means all.
	ListenAddresses []netip.Addr
	// Peers are the upstream routers.
	Peers []Peer
	// GracefulRestart enables BGP Graceful Restart (RFC 4724) on every
	// session; nil disables it.
	GracefulRestart *GracefulRestart
}

// GracefulRestart holds the speaker's Graceful Restart settings.
type GracefulRestart struct {
	// RestartTime is how long routers keep the director's routes after its
	// sessions closed without a NOTIFICATION (a restart), and the longest the
	// restarted speaker waits for its first non-empty set before it connects.
	RestartTime time.Duration
}

// Peer is one BGP neighbor.
type Peer struct {
	// Address is the neighbor's address.
	Address netip.Addr
	// ASN is the neighbor's AS number.
	ASN uint32
	// Port is the neighbor's TCP port (179).
	Port uint16
	// LocalAddress is the source address of the session; invalid means any.
	LocalAddress netip.Addr
	// HoldTime and Keepalive are the BGP timers offered to the peer.
	HoldTime, Keepalive time.Duration
	// ConnectRetry is the time between connection attempts.
	ConnectRetry time.Duration
	// IdleHoldAfterReset is how long the speaker waits after a session reset
	// before it reconnects (GoBGP's default is 30 s; ours is low).
	IdleHoldAfterReset time.Duration
	// Passive makes the speaker wait for the peer to connect.
	Passive bool
	// MultihopTTL enables eBGP multihop with this TTL; 0 means directly connected.
	MultihopTTL uint8
	// Password is the TCP MD5 (RFC 2385) key; "" disables it. It may come
	// from the file, a password_file or an environment variable; it is a
	// secret, never logged, printed or returned by the API.
	Password string
	// PasswordFrom says where Password came from, for humans: "inline",
	// "file PATH" or "environment NAME" ("" without a password).
	PasswordFrom string
	// TTLSecurity enables GTSM (RFC 5082) with this many hops; 0 disables it.
	TTLSecurity uint8
	// BFD enables BFD for the session; nil disables it.
	BFD *BFD
	// IPv4 and IPv6 enable the unicast address families.
	IPv4, IPv6 bool
}

// Hops is how many hops away the session allows the peer to be: 1 for a
// directly connected peer, multihop_ttl or ttl_security when set.
func (p Peer) Hops() int {
	return max(1, int(p.MultihopTTL), int(p.TTLSecurity))
}

// BFD holds a session's BFD timers.
type BFD struct {
	// MinInterval is the desired transmit and required receive interval.
	MinInterval time.Duration
	// Multiplier is the detection multiplier.
	Multiplier uint8
}

// Kernel configures announcement through a local routing daemon.
type Kernel struct {
	// Table is the routing table VIP routes are written to for redistribution.
	Table int
	// Protocol is the route protocol number that marks routes as ours.
	Protocol int
}

// IPVS holds the data-plane settings of the daemon's network namespace.
type IPVS struct {
	// ManageSysctls makes the daemon set the IPVS sysctls for flow continuity
	// behind ECMP (see package ipvs); false leaves the kernel's values alone.
	ManageSysctls bool
	// Sysctls override single values under net.ipv4.vs (for example
	// "sloppy_tcp": 0) on top of the daemon's choices.
	Sysctls map[string]int
	// Sync runs the kernel's connection synchronization between directors
	// (a master and a backup sync daemon on every director); nil runs none.
	Sync *Sync
}

// Sync configures the IPVS sync daemons: every director multicasts the
// connections it schedules and holds the others', so a flow that ECMP moves
// to another director keeps its real server even after real servers
// changed (docs/flow-sync.md).
type Sync struct {
	// Interface carries the sync traffic: the segment the directors share.
	Interface string
	// SyncID tags this cluster's messages; directors accept only their own.
	SyncID uint8
	// Group is the multicast group the daemons send to and join.
	Group netip.Addr
	// Port is the first UDP port (one more per sync_ports thread).
	Port uint16
	// TTL is the multicast TTL (1: the directors' own segment).
	TTL uint8
	// MaxMessage is the largest UDP payload of a sync message; 0 lets the
	// kernel derive it from the interface MTU.
	MaxMessage uint16
}

// Protocol is a service's transport protocol.
type Protocol int

const (
	// TCP is IPPROTO_TCP.
	TCP Protocol = 6
	// UDP is IPPROTO_UDP.
	UDP Protocol = 17
)

// String returns "tcp" or "udp".
func (p Protocol) String() string {
	switch p {
	case TCP:
		return "tcp"
	case UDP:
		return "udp"
	}
	return "unknown"
}

// Forwarding is how IPVS delivers packets to backends, or "local".
type Forwarding int

const (
	// ForwardDR is direct routing: the frame is re-addressed to the backend's MAC.
	ForwardDR Forwarding = iota + 1
	// ForwardNAT rewrites the destination address.
	ForwardNAT
	// ForwardTunnel encapsulates in IP-in-IP.
	ForwardTunnel
	// ForwardLocal means a process on this host serves the VIP: no IPVS, only
	// the announcement.
	ForwardLocal
)

// String returns the configuration spelling of f.
func (f Forwarding) String() string {
	switch f {
	case ForwardDR:
		return "dr"
	case ForwardNAT:
		return "nat"
	case ForwardTunnel:
		return "tunnel"
	case ForwardLocal:
		return "local"
	}
	return "unknown"
}

// Service is one virtual service: a VIP, port and protocol spread over backends.
type Service struct {
	// Name is unique within the configuration.
	Name string
	// VIP is the virtual address (IPv4 or IPv6).
	VIP netip.Addr
	// Port is the service port.
	Port uint16
	// Protocol is TCP or UDP.
	Protocol Protocol
	// Scheduler is the IPVS scheduler name ("mh", "wlc", ...).
	Scheduler string
	// SchedulerFlags are scheduler flags by name ("mh-port", "mh-fallback", ...).
	SchedulerFlags []string
	// Persistence is the persistence timeout; 0 disables persistence.
	Persistence time.Duration
	// Forwarding is dr, nat, tunnel or local.
	Forwarding Forwarding
	// MinHealthy is how many healthy backends the VIP needs to be announced.
	MinHealthy int
	// Health is the check run against every backend.
	Health Check
	// Advertise holds the route attributes for the VIP.
	Advertise Advertise
	// Backends are the real servers (health targets only for local services).
	Backends []Backend
}

// Advertise holds per-VIP route attributes. Services sharing a VIP must agree.
type Advertise struct {
	// Communities are standard communities as ASN:value.
	Communities []uint32
	// LargeCommunities are RFC 8092 communities.
	LargeCommunities [][3]uint32
	// MED is the multi-exit discriminator; nil sends none.
	MED *uint32
	// ShutdownMED replaces MED while the VIP is gracefully withdrawn; nil keeps MED.
	ShutdownMED *uint32
	// ASPathPrepend is how many extra times the director prepends its ASN.
	ASPathPrepend int
}

// Backend is a real server.
type Backend struct {
	// Address is the real server's address.
	Address netip.Addr
	// Port is the real server's port (the service port when omitted).
	Port uint16
	// Weight is the IPVS weight (0 keeps the backend configured but idle).
	Weight int
}

// CheckType names a health check kind: check.Type, shared with the health
// checkers.
type CheckType = check.Type

// The health check kinds.
const (
	CheckTCP   = check.TCP
	CheckHTTP  = check.HTTP
	CheckHTTPS = check.HTTPS
	CheckUDP   = check.UDP
	CheckDNS   = check.DNS
	CheckExec  = check.Exec
)

// Check is a service's health check. It is check.Spec, the one type the
// configuration and the health checkers share: validation fills it, the
// announcer hands it to the health scheduler as is.
type Check = check.Spec
