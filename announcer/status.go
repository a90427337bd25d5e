package announcer

import (
	"net/netip"
	"time"

	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/routing"
	"github.com/anycast-director/director/statedir"
)

// Status is an immutable snapshot of what the director does and why. The loop
// publishes a new one after every pass; readers never see a half-built one.
type Status struct {
	// Director is this director's name.
	Director string
	// Config describes the running configuration.
	Config ConfigVersion
	// Learning is true during the start-up learn period.
	Learning bool
	// Drained is the director-wide drain note, nil when not drained.
	Drained *Note
	// ShuttingDown is true once a graceful shutdown began.
	ShuttingDown bool
	// VIPs lists every VIP and whether it is advertised, and why.
	VIPs []VIPStatus
	// Services lists every service with its backends.
	Services []ServiceStatus
	// Peers are the routing sessions.
	Peers []routing.PeerStatus
	// Sysctls are the IPVS sysctls as read back from the kernel at the last
	// resync tick (vectors one name per value: sync_threshold, sync_period).
	Sysctls map[string]int
	// Sync is the IPVS connection synchronization: configured or not, the
	// daemons the kernel runs, and why they do not run as configured.
	Sync ipvs.SyncStatus
	// Overrides are the active operator overrides.
	Overrides Overrides
	// LastPass is when the last reconcile pass ended; PassDuration how long it took.
	LastPass time.Time
	// PassDuration is the duration of the last pass.
	PassDuration time.Duration
	// Passes counts reconcile passes; FailedPasses those that returned errors.
	Passes, FailedPasses uint64
	// LastError is the last pass's error ("" when it succeeded).
	LastError string
	// WithdrawnForFailures is set while every VIP is withdrawn because the
	// loop could not reconcile for too long.
	WithdrawnForFailures bool
	// HealthLoad is the health checker's own load, when it reports one.
	HealthLoad *health.Load
	// State says how the state directory fares (nil when none is used).
	State *statedir.Report
}

// ConfigVersion identifies one loaded configuration.
type ConfigVersion struct {
	// Version counts loads since start (1 is the first).
	Version int
	// Digest is the configuration file's digest.
	Digest string
	// Source is the file it came from.
	Source string
	// Loaded is when it was applied.
	Loaded time.Time
	// Who loaded it: the operator behind a reload or rollback through the
	// API ("" for the daemon itself: a start or a SIGHUP).
	Who string
	// Reason says how it came to run ("start", "reload", "rollback to
	// version 3", with the operator's reason after a colon).
	Reason string
}

// VIPStatus is one VIP's announcement state.
type VIPStatus struct {
	// VIP is the address.
	VIP netip.Addr
	// Advertised says the route is announced now.
	Advertised bool
	// Graceful says it is announced with GRACEFUL_SHUTDOWN before a withdraw.
	Graceful bool
	// Reason explains the state.
	Reason string
	// Services names the services on the VIP.
	Services []string
	// Since is when Advertised last changed.
	Since time.Time
}

// ServiceStatus is one service's state.
type ServiceStatus struct {
	// Name is the service name.
	Name string
	// Key is the VIP, port and protocol.
	Key ipvs.Key
	// Forwarding is dr, nat, tunnel or local.
	Forwarding string
	// Scheduler and Flags are the IPVS scheduler settings.
	Scheduler string
	// Flags are the scheduler flags.
	Flags []string
	// Healthy, Total and MinHealthy are the health roll-up.
	Healthy, Total, MinHealthy int
	// Programmed says IPVS accepted the service (always true for local services).
	Programmed bool
	// Error is the programming error, if any.
	Error string
	// Fingerprint summarises the kernel's destination order and weights.
	Fingerprint string
	// Counters are the service's IPVS counters.
	Counters ipvs.Stats
	// Backends are the service's backends.
	Backends []BackendStatus
}

// BackendStatus is one backend's state.
type BackendStatus struct {
	BackendPlan
	// Counters are the destination's IPVS counters.
	Counters ipvs.Stats
}

// VIP returns the status of vip, if configured.
func (s *Status) VIP(vip netip.Addr) (VIPStatus, bool) {
	for _, v := range s.VIPs {
		if v.VIP == vip {
			return v, true
		}
	}
	return VIPStatus{}, false
}

// Service returns the status of the named service, if configured.
func (s *Status) Service(name string) (ServiceStatus, bool) {
	for _, v := range s.Services {
		if v.Name == name {
			return v, true
		}
	}
	return ServiceStatus{}, false
}
