// Package health checks real servers. One Scheduler runs every target: identical
// targets are probed once, first probes are spread at random offsets over the
// interval, every probe runs under a context deadline, and a small pure Dampener
// turns probe results into Up/Down verdicts with rise/fall hysteresis.
package health

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"time"
)

// Type names a checker.
type Type string

// The checker kinds.
const (
	TCP   Type = "tcp"
	HTTP  Type = "http"
	HTTPS Type = "https"
	UDP   Type = "udp"
	DNS   Type = "dns"
	Exec  Type = "exec"
)

// Spec describes how to probe a target. Two targets with equal Keys are the same
// probe and run once.
type Spec struct {
	// Type selects the checker.
	Type Type
	// Interval is the time between probe starts; Timeout bounds one probe.
	Interval, Timeout time.Duration
	// Rise and Fall are the consecutive successes or failures that flip state.
	Rise, Fall int
	// Source is the local address probes are sent from; invalid lets the kernel pick.
	Source netip.Addr
	// Method, Path and Host shape HTTP requests.
	Method, Path, Host string
	// ExpectStatus lists accepted HTTP status codes (empty means 200-399).
	ExpectStatus []int
	// ExpectBody, when set, must appear in the HTTP body or UDP reply.
	ExpectBody string
	// TLSServerName is the https SNI and verification name.
	TLSServerName string
	// TLSVerify turns on certificate verification for https.
	TLSVerify bool
	// Payload is what a udp check sends.
	Payload string
	// Query, QueryType ("A", "AAAA", ...) and RCode ("NOERROR", ...) describe a dns check.
	Query, QueryType, RCode string
	// Command is an exec check's argv. The target is passed in the environment as
	// DIRECTOR_TARGET_ADDR and DIRECTOR_TARGET_PORT.
	Command []string
}

// Target is one thing to check: an address and port probed with a Spec.
type Target struct {
	// Addr and Port are what is probed (the check's port override already applied).
	Addr netip.Addr
	// Port is the probed port.
	Port uint16
	// Spec is how it is probed.
	Spec Spec
}

// Key identifies t; equal keys are deduplicated into one probe. It reads
// "type|addr:port|spec-hash": the hash covers every other Spec field (64 bits
// of SHA-256, so distinct specs collide with negligible probability), which
// keeps keys short: the announcer looks every backend up by key on every pass.
func (t Target) Key() string {
	s := t.Spec
	spec := fmt.Sprintf("%s|%s|%d/%d|src=%s|%q %q host=%q st=%v body=%q sni=%q v=%t|p=%q|q=%q %q %q|cmd=%q",
		s.Interval, s.Timeout, s.Rise, s.Fall, s.Source,
		s.Method, s.Path, s.Host, s.ExpectStatus, s.ExpectBody, s.TLSServerName, s.TLSVerify,
		s.Payload, s.Query, s.QueryType, s.RCode, s.Command)
	sum := sha256.Sum256([]byte(spec))
	return fmt.Sprintf("%s|%s|%x", s.Type, netip.AddrPortFrom(t.Addr, t.Port), sum[:8])
}

// State is a target's dampened verdict.
type State int

const (
	// Unknown means no probe has completed yet.
	Unknown State = iota
	// Down means the target failed Fall probes in a row (or has not yet passed
	// Rise probes since it was added).
	Down
	// Up means the target passed Rise probes in a row.
	Up
)

// String returns "unknown", "down" or "up".
func (s State) String() string {
	switch s {
	case Up:
		return "up"
	case Down:
		return "down"
	}
	return "unknown"
}

// MarshalText makes JSON logs and encoders print the state's name.
func (s State) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// Result is the latest knowledge about one target.
type Result struct {
	// State is the dampened verdict.
	State State
	// Reason explains State for humans ("2/2 probes passed", "rising 1/2",
	// "connect: connection refused").
	Reason string
	// LastError is the last probe error ("" when the last probe passed).
	LastError string
	// Latency is the last probe's duration.
	Latency time.Duration
	// Since is when State last changed.
	Since time.Time
	// LastProbe is when the last probe finished.
	LastProbe time.Time
	// Probes counts completed probes.
	Probes uint64
}

// Snapshot maps Target.Key() to the target's Result. It is never mutated after
// it is published.
type Snapshot map[string]Result
