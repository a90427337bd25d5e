package runner

import (
	"context"
	"strconv"
)

// createLink creates one veth pair: each end in its node's network namespace
// under the endpoint's name, or, for a bridge endpoint, on the container
// host enslaved to the bridge; both ends up, as containerlab leaves them.
func (l *Lab) createLink(ctx context.Context, lk Link) error {
	a, b := lk.A, lk.B
	nsA, nsB := l.NetNS(a.Node), l.NetNS(b.Node)
	args := []string{"ip", "-n", nsA, "link", "add", a.Interface}
	if lk.MTU > 0 {
		args = append(args, "mtu", strconv.Itoa(lk.MTU))
	}
	args = append(args, "type", "veth", "peer", "name", b.Interface)
	if lk.MTU > 0 {
		args = append(args, "mtu", strconv.Itoa(lk.MTU))
	}
	args = append(args, "netns", nsB)
	if err := l.run(ctx, args...); err != nil {
		return err
	}
	for _, e := range []struct {
		ns string
		ep Endpoint
	}{{nsA, a}, {nsB, b}} {
		if n := l.Topo.Node(e.ep.Node); n.Kind == KindBridge {
			if err := l.run(ctx, "ip", "-n", e.ns, "link", "set", e.ep.Interface, "master", n.Name); err != nil {
				return err
			}
		}
		if err := l.run(ctx, "ip", "-n", e.ns, "link", "set", e.ep.Interface, "up"); err != nil {
			return err
		}
	}
	return nil
}
