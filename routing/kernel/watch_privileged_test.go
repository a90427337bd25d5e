//go:build linux && privileged

package kernel

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedWatchRepairsAtOnce: a VIP deleted by hand (ip addr del, and
// for the local-route binding ip route del) wakes Watch's poke from the
// kernel's event, and the Set that poke asks for binds it again and reports
// the repair: no resync tick involved.
func TestPrivilegedWatchRepairsAtOnce(t *testing.T) {
	for _, c := range []struct {
		name    string
		binding Binding
		del     []string
	}{
		{"address", BindAddress, []string{"ip", "addr", "del", "198.18.0.10/32", "dev", "lo"}},
		{"local route", BindLocalRoute, []string{"ip", "route", "del", "local", "198.18.0.10/32", "dev", "lo", "table", "local"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			ns := netlab.New(t).Namespace("watch")
			repaired := make(chan string, 4)
			v, err := NewVIPs(discard(), VIPOptions{Interface: "lo", Protocol: testProto, Namespace: nsPath(ns), Binding: c.binding,
				OnRepair: func(a netip.Addr) { repaired <- a.String() }})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { v.Close() })
			ctx, cancel := context.WithCancel(context.Background())
			want := addrs("198.18.0.10")
			if err := v.Set(ctx, want); err != nil {
				t.Fatal(err)
			}
			pokes := make(chan struct{}, 1)
			watched := make(chan error, 1)
			go func() {
				watched <- v.Watch(ctx, func() {
					select {
					case pokes <- struct{}{}:
					default:
					}
				})
			}()
			t.Cleanup(func() { cancel(); <-watched })
			// Watch subscribes asynchronously: delete until a poke comes
			// (the address is bound again each round, as the loop would).
			deadline := time.Now().Add(10 * time.Second)
			for poked := false; !poked; {
				ns.MustRun(c.del...)
				select {
				case <-pokes:
					poked = true
				case <-time.After(200 * time.Millisecond):
					if time.Now().After(deadline) {
						t.Fatal("no poke 10 s after the VIP was deleted")
					}
				}
				if err := v.Set(ctx, want); err != nil {
					t.Fatal(err)
				}
			}
			select {
			case got := <-repaired:
				if got != "198.18.0.10" {
					t.Errorf("repaired %s", got)
				}
			default:
				t.Error("the Set after the poke reported no repair")
			}
			owned, err := v.Owned(ctx)
			if err != nil || !slices.Equal(owned, want) {
				t.Errorf("owned after the repair: %v %v", owned, err)
			}
		})
	}
}
