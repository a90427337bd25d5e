package config

import "math"

// sync validates ipvs.sync: the IPVS connection synchronization daemons.
func (v *validator) sync(x *rawSync) *Sync {
	out := &Sync{Group: DefaultSyncGroup, Port: DefaultSyncPort, TTL: DefaultSyncTTL}
	switch {
	case x.Interface == nil:
		v.missing("ipvs.sync.interface", "required: the interface the directors share, which carries the sync multicast").
			hintf("for example interface: eth1")
	case *x.Interface == "lo":
		v.errf("ipvs.sync.interface", "lo reaches no other director").
			hintf("name the interface of the segment the directors share, for example eth1")
	case v.ifname(*x.Interface, "ipvs.sync.interface", "eth1"):
		out.Interface = *x.Interface
	}
	if x.SyncID == nil {
		v.missing("ipvs.sync.sync_id", "required: the id of this cluster's sync messages, the same on every director of the cluster").
			hintf("1..255, different for every cluster that shares the segment; for example sync_id: 1")
	} else if id, ok := v.integer(x.SyncID, "ipvs.sync.sync_id", 0, 1, 255); ok {
		out.SyncID = uint8(id)
	}
	if x.Group != nil {
		if g, ok := v.addr(x.Group, "ipvs.sync.group"); ok {
			if !g.IsMulticast() {
				v.errf("ipvs.sync.group", "%s is not a multicast address", g).
					hintf("the default is %s; an IPv6 group is an ff02::/16 address such as ff02::81", DefaultSyncGroup)
			} else {
				out.Group = g
			}
		}
	}
	if p, ok := v.integer(x.Port, "ipvs.sync.port", DefaultSyncPort, 1, math.MaxUint16); ok {
		out.Port = uint16(p)
	}
	if t, ok := v.integer(x.TTL, "ipvs.sync.ttl", DefaultSyncTTL, 1, 255); ok {
		out.TTL = uint8(t)
	}
	// A backup's buffer is at least 1024 bytes; the largest UDP payload of an
	// IPv4 datagram is 65507.
	if m, ok := v.integer(x.MaxMessage, "ipvs.sync.max_message", 0, 1024, 65507); ok {
		out.MaxMessage = uint16(m)
	}
	return out
}
