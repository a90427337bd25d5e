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
	fs, f := routerConfigFlags()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() == 0 {
		fmt.Fprintln(stderr, "usage: directord router-config [-flavor frr|bird] [flags] DIRECTOR-CONFIG...")
		return exitUsage
	}
	return routerConfig(fs.Args(), f, stdout, stderr)
}

// routerConfigOpts are router-config's flag values.
type routerConfigOpts struct {
	flavor, routerID, addrs, ospfIfs, ospfArea *string
	asn                                        *uint
	maxPaths                                   *int
	ospfP2P                                    *bool
}

// routerConfigFlags defines router-config's flags (also read by the manual
// page and the shell completion).
func routerConfigFlags() (*flag.FlagSet, routerConfigOpts) {
	fs := flag.NewFlagSet("router-config", flag.ContinueOnError)
	var f routerConfigOpts
	f.flavor = fs.String("flavor", "frr", "router software: frr or bird")
	f.asn = fs.Uint("router-asn", 0, "the router's AS number (default: from the directors' peer entries)")
	f.routerID = fs.String("router-id", "", "the router's router ID (default: its lowest IPv4 peer address)")
	f.addrs = fs.String("router-addresses", "", "comma-separated addresses of this router: only peer entries with these addresses are used")
	f.maxPaths = fs.Int("maximum-paths", 0, "ECMP width (default: max(8, number of directors))")
	f.ospfIfs = fs.String("ospf-interfaces", "", "comma-separated router interfaces toward OSPF directors (announce: kernel); required when any director uses OSPF")
	f.ospfArea = fs.String("ospf-area", "0.0.0.0", "OSPF area of those interfaces")
	f.ospfP2P = fs.Bool("ospf-point-to-point", false, "run the OSPF interfaces as point-to-point links (one director per link; no DR election)")
	return fs, f
}

// routerConfig generates the routers' configuration for the files.
func routerConfig(files []string, f routerConfigOpts, stdout, stderr io.Writer) int {
	flavor, asn, routerID, addrs, maxPaths := f.flavor, f.asn, f.routerID, f.addrs, f.maxPaths
	ospfIfs, ospfArea, ospfP2P := f.ospfIfs, f.ospfArea, f.ospfP2P
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
	for _, path := range files {
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
