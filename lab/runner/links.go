package runner

import (
	"context"

	"github.com/anycast-director/director/lab/nslab"
)

// createLink creates one veth pair: each end in its node's network namespace
// under the endpoint's name, or, for a bridge endpoint, on the container
// host as a port of the bridge; both ends up, as containerlab leaves them.
func (l *Lab) createLink(ctx context.Context, lk Link) error {
	a, err := l.endNode(lk.A)
	if err != nil {
		return err
	}
	b, err := l.endNode(lk.B)
	if err != nil {
		return err
	}
	if err := nslab.Link(ctx, a, lk.A.Interface, b, lk.B.Interface, lk.MTU); err != nil {
		return err
	}
	for _, e := range []Endpoint{lk.A, lk.B} {
		if n := l.Topo.Node(e.Node); n.Kind == KindBridge {
			if err := l.host.Enslave(ctx, e.Interface, n.Name); err != nil {
				return err
			}
		}
	}
	return nil
}

// endNode is the namespace an endpoint's interface lives in.
func (l *Lab) endNode(e Endpoint) (*nslab.Node, error) {
	if l.Topo.Node(e.Node).Kind == KindBridge {
		return l.host, nil
	}
	return l.Node(e.Node)
}
