package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// outputFlag adds -o/--output with the given choices (the first is the default).
func outputFlag(cmd *cobra.Command, out *string, choices ...string) {
	cmd.Flags().StringVarP(out, "output", "o", choices[0], "output format: "+strings.Join(choices, " or "))
}

// checkOutput validates -o.
func checkOutput(out string, choices ...string) error {
	for _, c := range choices {
		if out == c {
			return nil
		}
	}
	return usagef("--output %q is not supported: use %s", out, strings.Join(choices, " or "))
}

func (a *app) reloadCmd() *cobra.Command {
	var dryRun bool
	var out string
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Re-read directord's configuration file (--dry-run: only show what would change)",
		Long: `reload makes directord re-read its configuration file, like SIGHUP. Operator
overrides are kept. A file with errors is refused and the running
configuration stays; the errors are printed. With --dry-run nothing changes:
the plan lists the IPVS services, destinations and routes that would be
added, changed or removed, and for every backend whose health check changes
whether its verdict is kept (only the timing changed) or starts over.`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out, "text", "json"); err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.Reload(ctx, &directorv1.ReloadRequest{DryRun: dryRun})
				if err != nil {
					return rpcError{"reload", err}
				}
				if out == "json" {
					return printJSON(a.stdout, resp)
				}
				printPlan(a.stdout, resp)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only compute and print the plan")
	outputFlag(cmd, &out, "text", "json")
	return cmd
}

// printPlan renders a reload's changes.
func printPlan(w io.Writer, resp *directorv1.ReloadResponse) {
	v := resp.GetVersion()
	if resp.GetApplied() {
		fmt.Fprintf(w, "loaded configuration version %d (%s)\n", v.GetVersion(), v.GetDigest())
	} else {
		fmt.Fprintf(w, "dry run against running version %d (%s): nothing was changed\n", v.GetVersion(), v.GetDigest())
	}
	if len(resp.GetChanges()) == 0 {
		fmt.Fprintln(w, "no changes")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tKIND\tSUBJECT\tDETAIL")
	for _, c := range resp.GetChanges() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", enumWord(c.GetAction().String(), "CHANGE_ACTION_"),
			enumWord(c.GetKind().String(), "CHANGE_KIND_"), c.GetSubject(), c.GetDetail())
	}
	tw.Flush()
}

func (a *app) rollbackCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "rollback [VERSION]",
		Short: "Re-apply a kept configuration (default: the previous one)",
		Long: `rollback re-applies a configuration from directord's history (see
'directorctl configs'). Without VERSION it goes back to the configuration
before the running one. The rolled-back configuration becomes a new version.`,
		Args: maxArgs(1, "one version"),
		RunE: func(cmd *cobra.Command, args []string) error {
			var version int64
			if len(args) == 1 {
				v, err := strconv.ParseInt(args[0], 10, 64)
				if err != nil || v < 1 {
					return usagef("version %q is not a positive number: pick one from `directorctl configs`", args[0])
				}
				version = v
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.Rollback(ctx, &directorv1.RollbackRequest{Version: version})
				if err != nil {
					return rpcError{"rollback", err}
				}
				v := resp.GetVersion()
				fmt.Fprintf(a.stdout, "rolled back: running configuration is now version %d (%s)\n", v.GetVersion(), v.GetDigest())
				return nil
			})
		},
	}
}

func (a *app) configsCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "configs",
		Short: "List the configurations kept for rollback",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out, "table", "json"); err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.ListConfigs(ctx, &directorv1.ListConfigsRequest{})
				if err != nil {
					return rpcError{"configs", err}
				}
				if out == "json" {
					return printJSON(a.stdout, resp)
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 0, 2, ' ', 0)
				fmt.Fprintln(tw, "VERSION\tDIGEST\tLOADED\tSOURCE\t")
				for _, v := range resp.GetConfigs() {
					mark := ""
					if v.GetVersion() == resp.GetRunning() {
						mark = "(running)"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\n", v.GetVersion(), v.GetDigest(),
						v.GetLoaded().AsTime().Local().Format(time.DateTime), v.GetSource(), mark)
				}
				return tw.Flush()
			})
		},
	}
	outputFlag(cmd, &out, "table", "json")
	return cmd
}

func (a *app) routerConfigCmd() *cobra.Command {
	var flavor string
	req := &directorv1.RouterConfigRequest{}
	cmd := &cobra.Command{
		Use:   "router-config",
		Short: "Print the upstream router's side of the peering (FRR or BIRD)",
		Long: `router-config prints the upstream router's side of this director's peering
for its running configuration, like directord router-config does for files.
The flags describe the router where the configuration cannot: which peer
entries are this router (--router-addresses), and, for directors that
announce through OSPF (announce: kernel), the router's interfaces toward them.`,
		Example: `  directorctl router-config --flavor bird
  directorctl router-config --router-addresses 10.0.1.1
  directorctl router-config --ospf-interfaces eth1,eth2 --ospf-point-to-point`,
		Args: exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			switch flavor {
			case "frr":
				req.Flavor = directorv1.RouterFlavor_ROUTER_FLAVOR_FRR
			case "bird":
				req.Flavor = directorv1.RouterFlavor_ROUTER_FLAVOR_BIRD
			default:
				return usagef("--flavor %q is not supported: use frr or bird", flavor)
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.RouterConfig(ctx, req)
				if err != nil {
					return rpcError{"router-config", err}
				}
				_, err = io.WriteString(a.stdout, resp.GetConfig())
				return err
			})
		},
	}
	f := cmd.Flags()
	f.StringVar(&flavor, "flavor", "frr", "router software: frr or bird")
	cmd.RegisterFlagCompletionFunc("flavor", cobra.FixedCompletions([]string{"frr", "bird"}, cobra.ShellCompDirectiveNoFileComp))
	f.StringSliceVar(&req.RouterAddresses, "router-addresses", nil, "this router's addresses: only peer entries with them are used (default: every peer entry)")
	f.Uint32Var(&req.RouterAsn, "router-asn", 0, "the router's AS number (default: from the peer entries)")
	f.StringVar(&req.RouterId, "router-id", "", "the router's router ID (default: its lowest IPv4 peer address)")
	f.Uint32Var(&req.MaximumPaths, "maximum-paths", 0, "ECMP width, 1 to 256 (default: max(8, number of directors))")
	f.StringSliceVar(&req.OspfInterfaces, "ospf-interfaces", nil, "the router's interfaces toward directors with announce: kernel (required for them)")
	f.StringVar(&req.OspfArea, "ospf-area", "", "OSPF area of those interfaces (default 0.0.0.0)")
	f.BoolVar(&req.OspfPointToPoint, "ospf-point-to-point", false, "run the OSPF interfaces as point-to-point links")
	return cmd
}

// enumWord turns "CHANGE_ACTION_ADD" into "add".
func enumWord(s, prefix string) string {
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(s, prefix)), "_", "-")
}
