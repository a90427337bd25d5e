package main

import (
	"flag"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/routing/routerconfig"
)

// cmdRouterConfig prints the upstream routers' side of the peering for one or
// more director configurations.
func cmdRouterConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("router-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	flavor := fs.String("flavor", "frr", "router software: frr or bird")
	asn := fs.Uint("router-asn", 0, "the router's AS number (default: from the directors' peer entries)")
	routerID := fs.String("router-id", "", "the router's router ID (default: its lowest IPv4 peer address)")
	addrs := fs.String("router-addresses", "", "comma-separated addresses of this router: only peer entries with these addresses are used")
	maxPaths := fs.Int("maximum-paths", 0, "ECMP width (default: max(8, number of directors))")
	ospfIfs := fs.String("ospf-interfaces", "", "comma-separated router interfaces toward OSPF directors (announce: kernel); required when any director uses OSPF")
	ospfArea := fs.String("ospf-area", "0.0.0.0", "OSPF area of those interfaces")
	ospfP2P := fs.Bool("ospf-point-to-point", false, "run the OSPF interfaces as point-to-point links (one director per link; no DR election)")
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: directord router-config [-flavor frr|bird] [flags] DIRECTOR-CONFIG...")
		return exitUsage
	}
	opts := routerconfig.Options{RouterASN: uint32(*asn), MaximumPaths: *maxPaths}
	if *routerID != "" {
		id, err := netip.ParseAddr(*routerID)
		if err != nil {
			fmt.Fprintf(stderr, "directord router-config: -router-id %q is not an IP address\n", *routerID)
			return exitUsage
		}
		opts.RouterID = id
	}
	for _, name := range strings.Split(*ospfIfs, ",") {
		if name = strings.TrimSpace(name); name != "" {
			opts.OSPF.Interfaces = append(opts.OSPF.Interfaces, name)
		}
	}
	area, err := netip.ParseAddr(*ospfArea)
	if err != nil || !area.Is4() {
		fmt.Fprintf(stderr, "directord router-config: -ospf-area %q is not an area ID in dotted form (e.g. 0.0.0.0)\n", *ospfArea)
		return exitUsage
	}
	opts.OSPF.Area, opts.OSPF.PointToPoint = area, *ospfP2P
	for _, a := range strings.Split(*addrs, ",") {
		if a = strings.TrimSpace(a); a == "" {
			continue
		}
		ip, err := netip.ParseAddr(a)
		if err != nil {
			fmt.Fprintf(stderr, "directord router-config: -router-addresses: %q is not an IP address\n", a)
			return exitUsage
		}
		opts.RouterAddresses = append(opts.RouterAddresses, ip)
	}
	var cfgs []*config.Config
	bad := false
	for _, path := range fs.Args() {
		cfg, err := config.Load(path)
		if err != nil {
			printConfigErrors(stderr, err)
			bad = true
			continue
		}
		cfgs = append(cfgs, cfg)
	}
	if bad {
		return exitUsage
	}
	out, err := routerconfig.Generate(*flavor, cfgs, opts)
	if err != nil {
		fmt.Fprintf(stderr, "directord router-config: %v\n", err)
		return exitUsage
	}
	stdout.Write(out)
	return exitOK
}
