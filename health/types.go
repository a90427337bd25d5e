// Package health checks real servers. One Scheduler runs every target: identical
// targets are probed once, first probes are spread at random offsets over the
// interval, every probe runs under a context deadline, and a small pure Dampener
// turns probe results into Up/Down verdicts with rise/fall hysteresis.
package health

import (
	"crypto/sha256"
	"encoding/hex"
	"net/netip"
	"strings"
	"time"

	"github.com/anycast-director/director/health/check"
)

// Target is one thing to check: an address and port probed with a Spec.
type Target struct {
	// Addr and Port are what is probed (the check's port override already applied).
	Addr netip.Addr
	// Port is the probed port.
	Port uint16
	// Spec is how it is probed; the configuration's check, shared type.
	Spec check.Spec
	// Path is where the forwarding check (Spec.ForwardingCheck) sends its
	// handshake; zero without one.
	Path Path
}

// Path is the forwarded traffic a forwarding check imitates: addressed to
// the VIP and service port, delivered to the target's address the way the
// service forwards.
type Path struct {
	// VIP and Port are what forwarded traffic is addressed to.
	VIP netip.Addr
	// Port is the service port.
	Port uint16
	// Tunnel is IP-in-IP (forwarding: tunnel); false is direct routing.
	Tunnel bool
}

// appendTo appends an encoding of p for the probe key ("" for none).
func (p Path) appendTo(b []byte) []byte {
	if !p.VIP.IsValid() {
		return b
	}
	b = append(b, "|via "...)
	b = netip.AddrPortFrom(p.VIP, p.Port).AppendTo(b)
	if p.Tunnel {
		b = append(b, " tunnel"...)
	}
	return b
}

// Key identifies t: "type|addr:port|probe-hash|interval/timeout/rise/fall".
// Equal keys are deduplicated into one probe with one verdict. The first
// three parts are ProbeKey, what is probed (the hash covers every field of
// check.Spec.AppendProbe and the forwarding Path, 64 bits of SHA-256, so
// distinct checks collide with negligible probability); the last part is
// the timing. Keys stay short
// because the announcer looks every backend up by key on every pass.
func (t Target) Key() string {
	b := make([]byte, 0, 96)
	b = t.appendProbeKey(b)
	b = append(b, '|')
	return string(t.Spec.AppendTiming(b))
}

// ProbeKey identifies what t probes, without the timing: targets with equal
// ProbeKeys that differ in timing are probed separately (each with its own
// rise and fall), but a reload that changes only the timing keeps the
// verdict.
func (t Target) ProbeKey() string { return string(t.appendProbeKey(make([]byte, 0, 64))) }

// appendProbeKey appends "type|addr:port|probe-hash".
func (t Target) appendProbeKey(b []byte) []byte {
	var buf [256]byte
	sum := sha256.Sum256(t.Path.appendTo(t.Spec.AppendProbe(buf[:0])))
	b = append(b, t.Spec.Type...)
	b = append(b, '|')
	b = netip.AddrPortFrom(t.Addr, t.Port).AppendTo(b)
	b = append(b, '|')
	return hex.AppendEncode(b, sum[:8])
}

// ProbeKeyOf returns the ProbeKey part of a Key, for callers that hold
// keys (a Snapshot's) rather than targets.
func ProbeKeyOf(key string) string {
	if i := strings.LastIndexByte(key, '|'); i >= 0 {
		return key[:i]
	}
	return key
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
