package kernel

import (
	"context"
	"fmt"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Watch calls poke whenever an address or a route of the local table is
// deleted in the VIP interface's namespace, so a VIP removed by hand is
// bound again by the pass poke asks for (Set repairs it) instead of at the
// next resync tick. It returns nil when ctx ends. When the kernel's events
// cannot be read (the subscription fails or its socket breaks) it logs why
// and returns nil: the resync tick still repairs, only later.
func (v *VIPs) Watch(ctx context.Context, poke func()) error {
	// In the process's own namespace subscribe in place: entering it, even
	// though it is the same, would need CAP_SYS_ADMIN, which the packaged
	// unit does not grant.
	var where *netns.NsHandle
	if v.opts.Namespace != "" {
		ns, err := namespaceHandle(v.opts.Namespace)
		if err != nil {
			return err
		}
		defer ns.Close()
		where = &ns
	}
	done := make(chan struct{})
	defer close(done)
	lost := func(err error) {
		if ctx.Err() == nil { // not the subscription's own end
			v.log.Warn("address and route events lost; a VIP removed by hand is bound again at the next resync tick", "err", err)
		}
	}
	addrs := make(chan netlink.AddrUpdate, 64)
	routes := make(chan netlink.RouteUpdate, 64)
	if err := netlink.AddrSubscribeWithOptions(addrs, done, netlink.AddrSubscribeOptions{Namespace: where, ErrorCallback: lost}); err != nil {
		lost(fmt.Errorf("subscribe to address events: %w", err))
		return nil
	}
	if err := netlink.RouteSubscribeWithOptions(routes, done, netlink.RouteSubscribeOptions{Namespace: where, ErrorCallback: lost}); err != nil {
		lost(fmt.Errorf("subscribe to route events: %w", err))
		return nil
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case u, ok := <-addrs:
			if !ok {
				return nil
			}
			if !u.NewAddr {
				poke()
			}
		case u, ok := <-routes:
			if !ok {
				return nil
			}
			if u.Type == unix.RTM_DELROUTE && u.Table == unix.RT_TABLE_LOCAL {
				poke()
			}
		}
	}
}
