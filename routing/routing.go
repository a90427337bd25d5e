// Package routing defines how a VIP reaches the upstream routers: the desired set
// of advertisements handed to an Advertiser, and the peer status it reports.
// The adapters live in routing/bgp (embedded GoBGP) and routing/kernel (local
// addresses and routes that FRR or BIRD redistribute, for OSPF).
package routing

import (
	"context"
	"net/netip"
	"time"
)

// GracefulShutdownCommunity is the well-known GRACEFUL_SHUTDOWN community
// 65535:0 (RFC 8326): routers lower the local preference of routes carrying it.
const GracefulShutdownCommunity uint32 = 0xFFFF0000

// Advertisement is one VIP route that the director wants routers to see.
type Advertisement struct {
	// Prefix is the VIP as a host prefix (/32 or /128).
	Prefix netip.Prefix
	// Communities are standard communities (ASN<<16 | value).
	Communities []uint32
	// LargeCommunities are RFC 8092 communities (global, local1, local2).
	LargeCommunities [][3]uint32
	// MED is the multi-exit discriminator; nil sends none.
	MED *uint32
	// ASPathPrepend is how many extra times the local ASN is prepended.
	ASPathPrepend int
	// GracefulShutdown tags the route with GracefulShutdownCommunity: the VIP is
	// about to be withdrawn and routers should move traffic away first.
	GracefulShutdown bool
}

// Advertiser announces exactly the given set of VIPs, withdrawing everything
// else it announced before. An empty set withdraws all. The adapter alone
// knows what is advertised: callers hand it the whole desired set every time
// and ask it (Advertised) instead of keeping a copy, so a set that was lost,
// withdrawn behind their back or only partly applied is never mistaken for
// one in place.
type Advertiser interface {
	// Set replaces the advertised set. It returns once the change is handed to
	// the routing layer; an error means the set may be partly applied and the
	// caller retries with the whole set on its next pass.
	Set(ctx context.Context, ads []Advertisement) error
	// Advertised returns what is in place now, sorted by prefix: what the
	// routing layer was given and accepted (BGP), or what the kernel holds
	// (routes that a local routing daemon redistributes). Attributes the
	// routing layer does not carry are left zero.
	Advertised(ctx context.Context) ([]Advertisement, error)
	// Peers reports the state of every routing session (empty for adapters
	// without sessions).
	Peers() []PeerStatus
}

// PeerStatus is one routing session's state for status, logs and metrics.
type PeerStatus struct {
	// Address is the neighbor's address.
	Address netip.Addr
	// ASN is the neighbor's AS number.
	ASN uint32
	// State is the session state ("idle", "connect", "active", "opensent",
	// "openconfirm", "established").
	State string
	// Since is when State was entered.
	Since time.Time
	// BFDState is the BFD session state ("up", "down", "init", "admin-down"),
	// "" when BFD is off.
	BFDState string
	// Flaps counts transitions out of established.
	Flaps uint64
	// Advertised is how many prefixes are currently sent to the peer.
	Advertised int
	// LastError is the last notification or connection error, if any.
	LastError string
}

// PeerEvent reports a session state change.
type PeerEvent struct {
	// Peer is the new state.
	Peer PeerStatus
	// Previous is the state before the change.
	Previous string
}
