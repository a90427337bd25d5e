package nslab

import (
	"context"
	"fmt"
	"strings"
)

// BGPNeighbor is one entry of FRR's `show bgp neighbors json`.
type BGPNeighbor struct {
	RemoteAS int    `json:"remoteAs"`
	State    string `json:"bgpState"` // "Established", "Active", "Idle", ...
	// UpMsec is how long the session has been established.
	UpMsec int64 `json:"bgpTimerUpMsec"`
	// Established and Dropped count sessions since the neighbor was
	// configured: a flapping session raises both.
	Established int    `json:"connectionsEstablished"`
	Dropped     int    `json:"connectionsDropped"`
	LastReset   string `json:"lastResetDueTo"`
	// LastNotification is the last NOTIFICATION sent or received, such as
	// "Cease/Administrative Shutdown"; LastShutdownMessage is its RFC 9003
	// text.
	LastNotification    string `json:"lastNotificationReason"`
	LastShutdownMessage string `json:"lastShutdownDescription"`
	// BFD is present when the neighbor has BFD configured.
	BFD *struct {
		Status string `json:"status"` // "Up", "Down", "Unknown"
	} `json:"peerBfdInfo"`
}

// BGPNeighbors returns the router's BGP neighbors by address.
func (f *FRR) BGPNeighbors(ctx context.Context) (map[string]BGPNeighbor, error) {
	var n map[string]BGPNeighbor
	if err := f.VtyshJSON(ctx, "show bgp neighbors json", &n); err != nil {
		return nil, err
	}
	return n, nil
}

// BGPPath is one path of `show bgp <afi> unicast <prefix> json`, with the
// attributes tests assert on: AS path, communities (FRR spells 65535:0 as
// "graceful-shutdown"), MED ("metric"), local preference, whether the path
// is valid, part of the multipath set or the best path, the peer it came
// from and its next hops.
type BGPPath struct {
	ASPath struct {
		String string `json:"string"`
	} `json:"aspath"`
	Community *struct {
		String string `json:"string"` // "65100:10 graceful-shutdown"
	} `json:"community"`
	LargeCommunity *struct {
		String string `json:"string"`
	} `json:"largeCommunity"`
	MED       *uint32 `json:"metric"`
	LocalPref *uint32 `json:"locPrf"`
	Valid     bool    `json:"valid"`
	Multipath bool    `json:"multipath"`
	BestPath  *struct {
		Overall bool `json:"overall"`
	} `json:"bestpath"`
	Peer struct {
		PeerID string `json:"peerId"`
	} `json:"peer"`
	NextHops []struct {
		IP string `json:"ip"`
	} `json:"nexthops"`
}

// Communities returns the path's standard communities as FRR prints them.
func (p BGPPath) Communities() string {
	if p.Community == nil {
		return ""
	}
	return p.Community.String
}

// BGPRoute returns the router's paths for a prefix ("198.18.0.10/32" or an
// IPv6 prefix); no paths means the router does not know the prefix.
func (f *FRR) BGPRoute(ctx context.Context, prefix string) ([]BGPPath, error) {
	afi := "ipv4"
	if strings.Contains(prefix, ":") {
		afi = "ipv6"
	}
	var r struct {
		Paths []BGPPath `json:"paths"`
	}
	if err := f.VtyshJSON(ctx, fmt.Sprintf("show bgp %s unicast %s json", afi, prefix), &r); err != nil {
		return nil, err
	}
	return r.Paths, nil
}
