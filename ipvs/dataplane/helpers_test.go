package dataplane

import (
	"net/netip"

	"github.com/anycast-director/director/ipvs"
)

// The shapes of the ipvs package's tests, for the tests of Apply.

var web = ipvs.Key{VIP: netip.MustParseAddr("198.18.0.10"), Port: 80, Protocol: 6}

func dst(addr string, weight int) ipvs.Destination {
	return ipvs.Destination{Address: netip.MustParseAddr(addr), Port: 80, Weight: weight, Forwarding: ipvs.DirectRoute}
}

func svc(k ipvs.Key, sched string, ds ...ipvs.Destination) ipvs.Service {
	return ipvs.Service{Key: k, Scheduler: sched, Destinations: ds}
}

func withConns(d ipvs.Destination, active, inactive int) ipvs.Destination {
	d.Conns.Active, d.Conns.Inactive = active, inactive
	return d
}

func draining(d ipvs.Destination) ipvs.Destination {
	d.Draining = true
	return d
}

// opLines renders ops as plan lines, which is also what a dry run prints.
func opLines(ops []ipvs.Op) []string {
	var out []string
	for _, o := range ops {
		out = append(out, o.String())
	}
	return out
}

// header is s without destinations and with canonical flags, as a service
// reads back from the kernel.
func header(s ipvs.Service) ipvs.Service {
	bits, _ := ipvs.FlagBits(s.Scheduler, s.Flags)
	return ipvs.Service{Key: s.Key, Scheduler: s.Scheduler, Flags: ipvs.FlagNames(s.Scheduler, bits), Persistence: s.Persistence}
}
