package control

import (
	"context"
	"net/netip"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
	"github.com/anycast-director/director/routing/routerconfig"
)

// RouterConfig renders the router side of the peering. The request carries
// what `directord router-config` takes as flags (the router's addresses, AS,
// ID, ECMP width and OSPF interfaces). A running configuration that gives no
// router configuration (announce: none, OSPF without the router's
// interfaces, ...) is a precondition, not an internal error.
func (s *service) RouterConfig(_ context.Context, req *directorv1.RouterConfigRequest) (*directorv1.RouterConfigResponse, error) {
	var flavor string
	switch req.GetFlavor() {
	case directorv1.RouterFlavor_ROUTER_FLAVOR_FRR:
		flavor = "frr"
	case directorv1.RouterFlavor_ROUTER_FLAVOR_BIRD:
		flavor = "bird"
	default:
		return nil, invalid("flavor %s is not supported: use ROUTER_FLAVOR_FRR or ROUTER_FLAVOR_BIRD", req.GetFlavor())
	}
	opts, err := routerOptions(req)
	if err != nil {
		return nil, err
	}
	if s.opts.RouterConfig == nil {
		return nil, status.Error(codes.Unimplemented, "router-config is not available in this daemon: run `directord router-config` with the configuration file")
	}
	out, err := s.opts.RouterConfig(flavor, opts)
	if err != nil {
		return nil, status.Error(codes.FailedPrecondition, "the running configuration gives no router configuration: "+err.Error())
	}
	return &directorv1.RouterConfigResponse{Flavor: req.GetFlavor(), Config: string(out)}, nil
}

// routerOptions checks the router's description in a request.
func routerOptions(req *directorv1.RouterConfigRequest) (routerconfig.Options, error) {
	opts := routerconfig.Options{RouterASN: req.GetRouterAsn(), OSPF: routerconfig.OSPFOptions{PointToPoint: req.GetOspfPointToPoint()}}
	for _, a := range req.GetRouterAddresses() {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil || ip.Zone() != "" {
			return opts, invalid("router address %q is not an IP address: give the router's addresses on the links to the directors", a)
		}
		opts.RouterAddresses = append(opts.RouterAddresses, ip.Unmap())
	}
	if id := req.GetRouterId(); id != "" {
		ip, err := netip.ParseAddr(strings.TrimSpace(id))
		if err != nil || !ip.Is4() {
			return opts, invalid("router_id %q is not an IPv4 address", id)
		}
		opts.RouterID = ip
	}
	if n := req.GetMaximumPaths(); n > 256 {
		return opts, invalid("maximum_paths %d is out of range: use 1 to 256, or 0 for max(8, number of directors)", n)
	} else {
		opts.MaximumPaths = int(n)
	}
	if a := req.GetOspfArea(); a != "" {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil || !ip.Is4() {
			return opts, invalid("ospf_area %q is not an area ID in dotted form (e.g. 0.0.0.0)", a)
		}
		opts.OSPF.Area = ip
	}
	for _, ifc := range req.GetOspfInterfaces() {
		if ifc == "" || len(ifc) > 15 || strings.ContainsAny(ifc, " \t\"/:") || strings.IndexFunc(ifc, isControl) >= 0 {
			return opts, invalid("OSPF interface %q is not an interface name (1 to 15 characters, no spaces, '/' or ':')", ifc)
		}
		opts.OSPF.Interfaces = append(opts.OSPF.Interfaces, ifc)
	}
	return opts, nil
}

func isControl(r rune) bool { return r < 0x20 || r == 0x7f }
