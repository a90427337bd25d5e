package main

import (
	"fmt"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/routing/kernel"
)

// vipBinding decides how VIPs are made local on a kernel of this release, and
// says why, for the start-up log.
func vipBinding(want config.VIPBinding, announce config.Announce, release string) (kernel.Binding, string) {
	switch want {
	case config.BindingAddress:
		return kernel.BindAddress, "director.vip_binding: address"
	case config.BindingLocalRoute:
		return kernel.BindLocalRoute, "director.vip_binding: local-route"
	}
	// With announce: kernel a local routing daemon redistributes our routes;
	// FRR would prefer the connected route of a VIP address over them and
	// announce nothing, so the VIP is made local with a local route instead
	// (docs/ospf.md).
	if announce == config.AnnounceKernel {
		return kernel.BindLocalRoute, "announce: kernel (a VIP address would be a connected route to the routing daemon)"
	}
	if !kernel.KeepsAddressProto(release) {
		return kernel.BindLocalRoute, fmt.Sprintf("kernel %q does not keep the address protocol mark (IFA_PROTO needs Linux 6.1)", release)
	}
	return kernel.BindAddress, fmt.Sprintf("kernel %s keeps the address protocol mark", release)
}
