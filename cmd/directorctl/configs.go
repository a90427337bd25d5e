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

	"github.com/anycast-director/director/internal/textdiff"
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
	printChanges(w, resp.GetChanges())
}

// printChanges renders a plan's changes as a table.
func printChanges(w io.Writer, changes []*directorv1.Change) {
	if len(changes) == 0 {
		fmt.Fprintln(w, "no changes")
		return
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "ACTION\tKIND\tSUBJECT\tDETAIL")
	for _, c := range changes {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", enumWord(c.GetAction().String(), "CHANGE_ACTION_"),
			enumWord(c.GetKind().String(), "CHANGE_KIND_"), c.GetSubject(), c.GetDetail())
	}
	tw.Flush()
}

func (a *app) rollbackCmd() *cobra.Command {
	var dryRun bool
	var reason, out string
	cmd := &cobra.Command{
		Use:   "rollback [VERSION]",
		Short: "Re-apply a kept configuration (default: the previous one); --dry-run shows what would change",
		Long: `rollback re-applies a configuration from directord's history (see
'directorctl configs'). Without VERSION it goes back to the configuration
before the running one. The rolled-back configuration becomes a new version,
and directord writes it to its configuration file (atomically; the replaced
file is kept next to it as FILE.bak-TIME), so a later reload or restart keeps
it. If the file is managed by configuration management, change it there too,
or its next run puts the old file back (docs/operations.md, "Rollback").

With --dry-run nothing changes: the diff of the file and the plan (IPVS
services, destinations, routes, health verdicts kept or reset) are printed.`,
		Example: `  directorctl configs                      # the kept versions
  directorctl rollback --dry-run            # what going back one version changes
  directorctl rollback 3 --reason "v4 broke the api pool"`,
		Args: maxArgs(1, "one version"),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(out, "text", "json"); err != nil {
				return err
			}
			var version int64
			if len(args) == 1 {
				v, err := parseVersion(args[0])
				if err != nil || v < 1 {
					return usagef("version %q is not a positive number: pick one from `directorctl configs`", args[0])
				}
				version = v
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.Rollback(ctx, &directorv1.RollbackRequest{Version: version, DryRun: dryRun, Reason: reason})
				if err != nil {
					return rpcError{"rollback", err}
				}
				if out == "json" {
					return printJSON(a.stdout, resp)
				}
				if dryRun {
					return a.printRollbackPreview(ctx, c, resp)
				}
				a.printRollback(resp)
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "only print the diff and the plan; change nothing")
	cmd.Flags().StringVar(&reason, "reason", "", "why, recorded in the event and audit logs")
	outputFlag(cmd, &out, "text", "json")
	return cmd
}

// printRollback reports a rollback: the new version, and what became of the
// configuration file.
func (a *app) printRollback(resp *directorv1.RollbackResponse) {
	v := resp.GetVersion()
	fmt.Fprintf(a.stdout, "rolled back: running configuration is now version %d (%s)\n", v.GetVersion(), v.GetDigest())
	switch {
	case resp.GetFileError() != "":
		fmt.Fprintf(a.stderr, "warning: the configuration file was not changed: %s\n"+
			"a reload or restart would load it again and undo this rollback\n", resp.GetFileError())
	case resp.GetBackup() != "":
		fmt.Fprintf(a.stdout, "wrote it to %s; the replaced file is kept as %s\n", resp.GetFile(), resp.GetBackup())
	case resp.GetFile() != "":
		fmt.Fprintf(a.stdout, "%s already holds it\n", resp.GetFile())
	}
}

// printRollbackPreview shows a rollback dry run: the diff from the running
// file to the version, then the plan.
func (a *app) printRollbackPreview(ctx context.Context, c directorv1.DirectorClient, resp *directorv1.RollbackResponse) error {
	v := resp.GetVersion()
	fmt.Fprintf(a.stdout, "dry run: rollback to version %d (%s); nothing was changed\n", v.GetVersion(), v.GetDigest())
	diff, err := configDiff(ctx, c, 0, v.GetVersion())
	if err != nil {
		return err
	}
	fmt.Fprintln(a.stdout)
	if diff == "" {
		fmt.Fprintln(a.stdout, "the files are identical")
	} else {
		io.WriteString(a.stdout, diff)
	}
	fmt.Fprintln(a.stdout)
	printChanges(a.stdout, resp.GetChanges())
	return nil
}

// parseVersion reads a configuration version argument.
func parseVersion(s string) (int64, error) { return strconv.ParseInt(s, 10, 64) }

func (a *app) configsCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "configs",
		Short: "List the configurations kept for rollback; show or diff them",
		Long: `configs lists the configurations directord keeps for rollback (api.keep_configs
of them, kept across restarts in the state directory): version, digest, when
it was loaded, by whom and why. 'configs show' prints one, 'configs diff'
compares two. Secret values (passwords) are shown as <redacted>.`,
		Args: exactArgs(0, "no arguments (or: show VERSION, diff A [B])"),
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
				fmt.Fprintln(tw, "VERSION\tDIGEST\tLOADED\tBY\tREASON\tSOURCE\t")
				for _, v := range resp.GetConfigs() {
					mark := ""
					if v.GetVersion() == resp.GetRunning() {
						mark = "(running)"
					}
					fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\n", v.GetVersion(), v.GetDigest(),
						v.GetLoaded().AsTime().Local().Format(time.DateTime), dash(v.GetWho()), dash(v.GetReason()), v.GetSource(), mark)
				}
				return tw.Flush()
			})
		},
	}
	outputFlag(cmd, &out, "table", "json")
	cmd.AddCommand(a.configsShowCmd(), a.configsDiffCmd())
	return cmd
}

func (a *app) configsShowCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "show [VERSION]",
		Short: "Print a kept configuration file (default: the running one)",
		Args:  maxArgs(1, "one version"),
		RunE: func(cmd *cobra.Command, args []string) error {
			version, err := versionArgs(args, 0)
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.GetConfig(ctx, &directorv1.GetConfigRequest{Version: version[0]})
				if err != nil {
					return rpcError{"configs show", err}
				}
				_, err = io.WriteString(a.stdout, resp.GetContent())
				return err
			})
		},
	}
}

func (a *app) configsDiffCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "diff A [B]",
		Short: "Compare two kept configurations (B: the running one by default), as a unified diff",
		Args: func(_ *cobra.Command, args []string) error {
			if len(args) < 1 || len(args) > 2 {
				return usagef("expected one or two versions, got %d arguments", len(args))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			versions, err := versionArgs(args, 0)
			if err != nil {
				return err
			}
			if len(versions) == 1 {
				versions = append(versions, 0)
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				diff, err := configDiff(ctx, c, versions[0], versions[1])
				if err != nil {
					return err
				}
				if diff == "" {
					fmt.Fprintln(a.stdout, "the files are identical")
					return nil
				}
				_, err = io.WriteString(a.stdout, diff)
				return err
			})
		},
	}
}

// versionArgs parses version arguments: positive numbers, or 0 where
// allowed (min 0: the running one).
func versionArgs(args []string, min int64) ([]int64, error) {
	out := make([]int64, 0, max(len(args), 1))
	for _, s := range args {
		v, err := parseVersion(s)
		if err != nil || v < min {
			return nil, usagef("version %q is not a number from `directorctl configs` (0: the running one)", s)
		}
		out = append(out, v)
	}
	if len(out) == 0 {
		out = append(out, 0)
	}
	return out, nil
}

// configDiff renders the unified diff of kept versions a and b (0: the
// running one); "" when the files are the same.
func configDiff(ctx context.Context, c directorv1.DirectorClient, a, b int64) (string, error) {
	ra, err := c.GetConfig(ctx, &directorv1.GetConfigRequest{Version: a})
	if err != nil {
		return "", rpcError{fmt.Sprintf("configs show %d", a), err}
	}
	rb, err := c.GetConfig(ctx, &directorv1.GetConfigRequest{Version: b})
	if err != nil {
		return "", rpcError{fmt.Sprintf("configs show %d", b), err}
	}
	name := func(v *directorv1.ConfigVersion) string {
		return fmt.Sprintf("version %d (%s)", v.GetVersion(), v.GetDigest())
	}
	return textdiff.Unified(name(ra.GetVersion()), name(rb.GetVersion()), ra.GetContent(), rb.GetContent()), nil
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
