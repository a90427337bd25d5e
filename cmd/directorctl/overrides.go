package main

import (
	"context"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/anycast-director/director/control/rules"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// refFlags are the flags that narrow a backend reference.
type refFlags struct {
	service string
	port    uint16
	reason  string
	expiry  time.Duration
}

func (f *refFlags) register(cmd *cobra.Command, expiry bool) {
	cmd.Flags().StringVar(&f.service, "service", "", "only this service (default: every service with this backend)")
	cmd.Flags().Uint16Var(&f.port, "port", 0, "only this backend port (default: every port)")
	cmd.Flags().StringVar(&f.reason, "reason", "", "why, shown in status and logs (a ticket number)")
	if expiry {
		cmd.Flags().DurationVar(&f.expiry, "for", 0, "lift the override automatically after this long (e.g. 1h; default: never)")
	}
}

// ref validates the address locally so typos fail fast, without a round trip.
func (f *refFlags) ref(addr string) (*directorv1.BackendRef, error) {
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return nil, usagef("backend address %q is not an IP address: use the address as in the configuration, e.g. 10.0.2.21", addr)
	}
	return &directorv1.BackendRef{Service: f.service, Address: a.String(), Port: uint32(f.port)}, nil
}

// expires converts --for: without the flag the override never lapses;
// with it, the value must pass the rule directord applies to every override
// (rules.CheckExpiry), so --for 0 is refused rather than meaning "never".
func expires(cmd *cobra.Command, d time.Duration) (*durationpb.Duration, error) {
	if !cmd.Flags().Changed("for") {
		return nil, nil
	}
	if err := rules.CheckExpiry(d); err != nil {
		return nil, usagef("--for: %v", err)
	}
	return durationpb.New(d), nil
}

// checkReason checks --reason with the rule directord applies.
func checkReason(reason string) error {
	if err := rules.CheckReason(reason); err != nil {
		return usagef("--reason: %v", err)
	}
	return nil
}

func (a *app) drainCmd() *cobra.Command {
	var f refFlags
	cmd := &cobra.Command{
		Use:   "drain ADDRESS",
		Short: "Drain a backend: weight 0, existing connections finish",
		Example: `  directorctl drain 10.0.2.21 --reason "TICKET-42 kernel update" --for 2h
  directorctl drain 10.0.2.21 --service web --port 80`,
		Args: exactArgs(1, "one backend address"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := f.ref(args[0])
			if err != nil {
				return err
			}
			exp, err := expires(cmd, f.expiry)
			if err != nil {
				return err
			}
			if err := checkReason(f.reason); err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: ref, Reason: f.reason, ExpiresAfter: exp})
				if err != nil {
					return rpcError{"drain " + args[0], err}
				}
				fmt.Fprintf(a.stdout, "draining %s%s\n", strings.Join(resp.GetMatched(), ", "), untilText(resp.GetOverride().GetNote()))
				return nil
			})
		},
	}
	f.register(cmd, true)
	return cmd
}

func (a *app) enableCmd() *cobra.Command {
	var f refFlags
	cmd := &cobra.Command{
		Use:   "enable ADDRESS",
		Short: "Lift the drains of a backend (--service/--port narrow which)",
		Args:  exactArgs(1, "one backend address"),
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := f.ref(args[0])
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.EnableBackend(ctx, &directorv1.EnableBackendRequest{Backend: ref, Reason: f.reason})
				if err != nil {
					return rpcError{"enable " + args[0], err}
				}
				if !resp.GetWasDrained() {
					fmt.Fprintf(a.stdout, "no drain on %s to lift%s; nothing changed (see `directorctl status`)\n", args[0], narrowed(f))
					return nil
				}
				fmt.Fprintf(a.stdout, "lifted the drain on %s\n", overrideList(resp.GetLifted()))
				return nil
			})
		},
	}
	f.register(cmd, false)
	return cmd
}

func (a *app) weightCmd() *cobra.Command {
	var (
		f             refFlags
		clearOverride bool
	)
	cmd := &cobra.Command{
		Use:   "weight ADDRESS [WEIGHT]",
		Short: "Override a backend's weight (0-65535), or --clear the override",
		Example: `  directorctl weight 10.0.2.21 5 --service web --reason "bigger box"
  directorctl weight 10.0.2.21 --clear`,
		Args: func(_ *cobra.Command, args []string) error {
			switch {
			case clearOverride && len(args) != 1:
				return usagef("with --clear give only the backend address")
			case !clearOverride && len(args) != 2:
				return usagef("expected a backend address and a weight, or --clear")
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			ref, err := f.ref(args[0])
			if err != nil {
				return err
			}
			req := &directorv1.SetWeightRequest{Backend: ref, Clear: clearOverride, Reason: f.reason}
			if !clearOverride {
				w, err := strconv.ParseUint(args[1], 10, 32)
				if err != nil || w > 65535 {
					return usagef("weight %q is not a number from 0 to 65535", args[1])
				}
				req.Weight = uint32(w)
			}
			if clearOverride && cmd.Flags().Changed("for") {
				return usagef("--for sets when an override lapses; --clear removes overrides now: drop one of them")
			}
			if req.ExpiresAfter, err = expires(cmd, f.expiry); err != nil {
				return err
			}
			if err := checkReason(f.reason); err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.SetWeight(ctx, req)
				if err != nil {
					return rpcError{"weight " + args[0], err}
				}
				switch {
				case clearOverride && len(resp.GetCleared()) == 0:
					fmt.Fprintf(a.stdout, "no weight override on %s to clear%s; nothing changed (see `directorctl status`)\n", args[0], narrowed(f))
				case clearOverride:
					fmt.Fprintf(a.stdout, "cleared the weight override %s; %s back to the configured weight\n",
						overrideList(resp.GetCleared()), strings.Join(resp.GetMatched(), ", "))
				default:
					fmt.Fprintf(a.stdout, "weight %d on %s%s\n", req.Weight, strings.Join(resp.GetMatched(), ", "),
						untilText(resp.GetOverride().GetNote()))
				}
				return nil
			})
		},
	}
	f.register(cmd, true)
	cmd.Flags().BoolVar(&clearOverride, "clear", false, "remove the weight override (back to the configured weight)")
	return cmd
}

func (a *app) vipCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "vip", Short: "Disable or enable a VIP (graceful withdraw)"}
	var reason string
	var expiry time.Duration
	disable := &cobra.Command{
		Use:   "disable VIP",
		Short: "Withdraw a VIP gracefully (GRACEFUL_SHUTDOWN first) until enabled",
		Args:  exactArgs(1, "one VIP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			vip, err := parseVIPArg(args[0])
			if err != nil {
				return err
			}
			exp, err := expires(cmd, expiry)
			if err != nil {
				return err
			}
			if err := checkReason(reason); err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.DisableVIP(ctx, &directorv1.DisableVIPRequest{Vip: vip, Reason: reason, ExpiresAfter: exp})
				if err != nil {
					return rpcError{"vip disable " + vip, err}
				}
				fmt.Fprintf(a.stdout, "VIP %s disabled%s\n", vip, untilText(resp.GetOverride().GetNote()))
				return nil
			})
		},
	}
	disable.Flags().StringVar(&reason, "reason", "", "why, shown in status and logs")
	disable.Flags().DurationVar(&expiry, "for", 0, "enable again automatically after this long (default: never)")
	enable := &cobra.Command{
		Use:   "enable VIP",
		Short: "Lift vip disable",
		Args:  exactArgs(1, "one VIP"),
		RunE: func(cmd *cobra.Command, args []string) error {
			vip, err := parseVIPArg(args[0])
			if err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.EnableVIP(ctx, &directorv1.EnableVIPRequest{Vip: vip, Reason: reason})
				if err != nil {
					return rpcError{"vip enable " + vip, err}
				}
				if !resp.GetWasDisabled() {
					fmt.Fprintf(a.stdout, "VIP %s was not disabled\n", vip)
					return nil
				}
				fmt.Fprintf(a.stdout, "VIP %s enabled\n", vip)
				return nil
			})
		},
	}
	enable.Flags().StringVar(&reason, "reason", "", "why, for the logs")
	cmd.AddCommand(disable, enable)
	return cmd
}

func parseVIPArg(s string) (string, error) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return "", usagef("VIP %q is not an IP address: use the VIP as in the configuration, e.g. 198.18.0.10", s)
	}
	return a.String(), nil
}

func (a *app) directorCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "director", Short: "Drain or undrain the whole director"}
	var reason string
	var expiry time.Duration
	drain := &cobra.Command{
		Use:   "drain",
		Short: "Withdraw every VIP gracefully while IPVS keeps forwarding",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			exp, err := expires(cmd, expiry)
			if err != nil {
				return err
			}
			if err := checkReason(reason); err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.DrainDirector(ctx, &directorv1.DrainDirectorRequest{Reason: reason, ExpiresAfter: exp})
				if err != nil {
					return rpcError{"director drain", err}
				}
				fmt.Fprintf(a.stdout, "director drained%s\n", untilText(resp.GetOverride().GetNote()))
				return nil
			})
		},
	}
	drain.Flags().StringVar(&reason, "reason", "", "why, shown in status and logs")
	drain.Flags().DurationVar(&expiry, "for", 0, "undrain automatically after this long (default: never)")
	undrain := &cobra.Command{
		Use:   "undrain",
		Short: "Lift director drain",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.UndrainDirector(ctx, &directorv1.UndrainDirectorRequest{Reason: reason})
				if err != nil {
					return rpcError{"director undrain", err}
				}
				if !resp.GetWasDrained() {
					fmt.Fprintln(a.stdout, "director was not drained")
					return nil
				}
				fmt.Fprintln(a.stdout, "director undrained")
				return nil
			})
		},
	}
	undrain.Flags().StringVar(&reason, "reason", "", "why, for the logs")
	cmd.AddCommand(drain, undrain)
	return cmd
}

// narrowed names the --service/--port a lift was narrowed by ("" if none).
func narrowed(f refFlags) string {
	var parts []string
	if f.service != "" {
		parts = append(parts, "--service "+f.service)
	}
	if f.port != 0 {
		parts = append(parts, "--port "+strconv.Itoa(int(f.port)))
	}
	if len(parts) == 0 {
		return ""
	}
	return " with " + strings.Join(parts, " ")
}

// overrideList renders lifted or cleared overrides ("web/10.0.2.21:* weight 5").
func overrideList(list []*directorv1.Override) string {
	items := make([]string, 0, len(list))
	for _, o := range list {
		items = append(items, overrideSubject(o))
	}
	return strings.Join(items, ", ")
}

// untilText renders an override's expiry (" until ..." or "").
func untilText(n *directorv1.Note) string {
	if n.GetExpires() == nil {
		return ""
	}
	return " until " + n.GetExpires().AsTime().Local().Format(time.DateTime)
}
