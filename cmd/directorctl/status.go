package main

import (
	"context"
	"fmt"
	"io"
	"maps"
	"net"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

func (a *app) statusCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "Show VIPs, services, backends, peers and overrides",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := checkOutput(out, "table", "json"); err != nil {
				return err
			}
			return a.call(cmd, func(ctx context.Context, c directorv1.DirectorClient) error {
				resp, err := c.GetStatus(ctx, &directorv1.GetStatusRequest{})
				if err != nil {
					return rpcError{"status", err}
				}
				if out == "json" {
					return printJSON(a.stdout, resp)
				}
				printStatus(a.stdout, resp, time.Now())
				return nil
			})
		},
	}
	outputFlag(cmd, &out, "table", "json")
	return cmd
}

// printStatus renders the human view.
func printStatus(w io.Writer, s *directorv1.GetStatusResponse, now time.Time) {
	cfg := s.GetConfig()
	fmt.Fprintf(w, "Director %s: %s\n", s.GetDirector(), directorState(s))
	fmt.Fprintf(w, "Config   version %d (%s) from %s, loaded %s ago\n", cfg.GetVersion(), cfg.GetDigest(),
		cfg.GetSource(), ago(tsTime(cfg.GetLoaded()), now))
	if fp := s.GetIpvsFingerprint(); fp != "" {
		fmt.Fprintf(w, "IPVS     fingerprint %s\n", fp)
	}
	r := s.GetReconcile()
	line := fmt.Sprintf("Passes   %d (%d failed), last %s ago took %s", r.GetPasses(), r.GetFailedPasses(),
		ago(tsTime(r.GetLastPass()), now), r.GetLastDuration().AsDuration().Round(time.Microsecond))
	if r.GetLastError() != "" {
		line += "; last error: " + r.GetLastError()
	}
	fmt.Fprintln(w, line)
	if h := s.GetHealthLoad(); h != nil {
		fmt.Fprintln(w, healthLoadLine(h, now))
	}
	if st := s.GetState(); st != nil {
		fmt.Fprintln(w, stateLine(st, now))
	}

	fmt.Fprintln(w)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VIP\tSTATE\tSINCE\tSERVICES\tREASON")
	for _, v := range s.GetVips() {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", v.GetAddress(), enumWord(v.GetState().String(), "VIP_STATE_"),
			ago(tsTime(v.GetSince()), now), strings.Join(v.GetServices(), ","), v.GetReason())
	}
	tw.Flush()

	for _, svc := range s.GetServices() {
		printService(w, svc)
	}

	if len(s.GetPeers()) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "PEER\tASN\tSTATE\tSINCE\tBFD\tFLAPS\tPREFIXES\tLAST ERROR")
		for _, p := range s.GetPeers() {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%d\t%d\t%s\n", p.GetAddress(), p.GetAsn(),
				enumWord(p.GetState().String(), "PEER_STATE_"), ago(tsTime(p.GetSince()), now),
				enumWord(p.GetBfdState().String(), "BFD_STATE_"), p.GetFlaps(), p.GetAdvertised(), dash(p.GetLastError()))
		}
		tw.Flush()
	}

	if len(s.GetOverrides()) > 0 {
		fmt.Fprintln(w)
		tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "OVERRIDE\tSUBJECT\tREASON\tBY\tEXPIRES")
		for _, o := range s.GetOverrides() {
			n := o.GetNote()
			expires := "never"
			if n.GetExpires() != nil {
				expires = n.GetExpires().AsTime().Local().Format(time.DateTime)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", enumWord(o.GetKind().String(), "OVERRIDE_KIND_"),
				overrideSubject(o), dash(n.GetReason()), dash(n.GetWho()), expires)
		}
		tw.Flush()
	}

	if len(s.GetSysctls()) > 0 {
		var parts []string
		for _, k := range slices.Sorted(maps.Keys(s.GetSysctls())) {
			parts = append(parts, fmt.Sprintf("%s=%d", k, s.GetSysctls()[k]))
		}
		fmt.Fprintf(w, "\nIPVS sysctls: %s\n", strings.Join(parts, " "))
	}
	if y := s.GetSync(); y != nil {
		fmt.Fprintln(w, syncLine(y))
	}
}

// syncLine says how connection synchronization runs: "IPVS sync: master
// eth1 id 7 224.0.0.81:8848 ttl 1 maxlen 1472, backup ... " or why not.
func syncLine(y *directorv1.SyncStatus) string {
	var ds []string
	for _, d := range y.GetDaemons() {
		ds = append(ds, fmt.Sprintf("%s %s id %d %s ttl %d maxlen %d", d.GetState(), d.GetInterface(), d.GetSyncId(),
			net.JoinHostPort(d.GetGroup(), fmt.Sprint(d.GetPort())), d.GetTtl(), d.GetMaxLen()))
	}
	running := "none running"
	if len(ds) > 0 {
		running = strings.Join(ds, "; ")
	}
	switch {
	case !y.GetConfigured():
		return "IPVS sync: not configured here; running: " + running
	case y.GetError() != "":
		return "IPVS sync: NOT AS CONFIGURED: " + y.GetError() + "; running: " + running
	}
	return "IPVS sync: " + running
}

// printService renders one service and its backends.
func printService(w io.Writer, svc *directorv1.Service) {
	fmt.Fprintln(w)
	proto := enumWord(svc.GetProtocol().String(), "PROTOCOL_")
	fwd := enumWord(svc.GetForwarding().String(), "FORWARDING_")
	head := fmt.Sprintf("Service %s  %s/%s:%d  %s", svc.GetName(), proto, svc.GetVip(), svc.GetPort(), fwd)
	if fwd != "local" {
		head += "  " + svc.GetScheduler()
		if len(svc.GetSchedulerFlags()) > 0 {
			head += "(" + strings.Join(svc.GetSchedulerFlags(), ",") + ")"
		}
	}
	head += fmt.Sprintf("  healthy %d/%d (min %d)", svc.GetHealthy(), svc.GetTotal(), svc.GetMinHealthy())
	switch {
	case !svc.GetProgrammed():
		head += "  NOT PROGRAMMED: " + svc.GetError()
	case fwd != "local":
		c := svc.GetCounters()
		head += fmt.Sprintf("  fingerprint %s  conns %d  in %s  out %s", dash(svc.GetFingerprint()),
			c.GetConnections(), bytesText(c.GetBytesIn()), bytesText(c.GetBytesOut()))
	}
	fmt.Fprintln(w, head)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "  BACKEND\tHEALTH\tWEIGHT CFG/EFF\tCONNS ACT/INACT/TOTAL\tLATENCY\tREASON\tOVERRIDE")
	for _, b := range svc.GetBackends() {
		h := b.GetHealth()
		health := enumWord(h.GetState().String(), "HEALTH_STATE_")
		if h.GetLastError() != "" {
			health += " (" + h.GetLastError() + ")"
		}
		state := ""
		switch {
		case b.GetDeleted():
			state = " [deleted]"
		case b.GetDraining():
			state = " [draining]"
		}
		c := b.GetCounters()
		latency := "-"
		if h.GetProbes() > 0 {
			latency = h.GetLatency().AsDuration().Round(time.Microsecond).String()
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d/%d%s\t%d/%d/%d\t%s\t%s\t%s\n", hostPort(b.GetAddress(), b.GetPort()), health,
			b.GetConfiguredWeight(), b.GetEffectiveWeight(), state,
			c.GetActiveConns(), c.GetInactiveConns(), c.GetConnections(), latency, dash(b.GetReason()), dash(b.GetOverride()))
	}
	tw.Flush()
}

// directorState summarises the director-wide state in a few words.
func directorState(s *directorv1.GetStatusResponse) string {
	switch {
	case s.GetShuttingDown():
		return "shutting down"
	case s.GetReconcile().GetWithdrawnForFailures():
		return "EVERY VIP WITHDRAWN: reconcile keeps failing"
	case s.GetDrained() != nil:
		d := "drained by operator"
		if r := s.GetDrained().GetReason(); r != "" {
			d += ": " + r
		}
		return d
	case s.GetLearning():
		return "learning (nothing is announced until every backend has a first verdict)"
	}
	advertised := 0
	for _, v := range s.GetVips() {
		if v.GetState() != directorv1.VIPState_VIP_STATE_WITHDRAWN {
			advertised++
		}
	}
	return fmt.Sprintf("serving, %d of %d VIPs advertised", advertised, len(s.GetVips()))
}

func overrideSubject(o *directorv1.Override) string {
	switch o.GetKind() {
	case directorv1.OverrideKind_OVERRIDE_KIND_DRAIN_BACKEND, directorv1.OverrideKind_OVERRIDE_KIND_WEIGHT:
		b := o.GetBackend()
		svc, port := b.GetService(), "*"
		if svc == "" {
			svc = "*"
		}
		if b.GetPort() != 0 {
			port = fmt.Sprint(b.GetPort())
		}
		s := svc + "/" + b.GetAddress() + ":" + port
		if o.GetKind() == directorv1.OverrideKind_OVERRIDE_KIND_WEIGHT {
			s += fmt.Sprintf(" weight %d", o.GetWeight())
		}
		return s
	case directorv1.OverrideKind_OVERRIDE_KIND_DISABLE_VIP:
		return o.GetVip()
	}
	return "director"
}

func hostPort(addr string, port uint32) string {
	if strings.Contains(addr, ":") {
		return fmt.Sprintf("[%s]:%d", addr, port)
	}
	return fmt.Sprintf("%s:%d", addr, port)
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// bytesText renders a byte count with a binary unit.
func bytesText(n uint64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

// stateLine summarises the state directory: where, when it was saved, and
// loudly whether the saved state was lost at start or cannot be written.
func stateLine(st *directorv1.StateDirectory, now time.Time) string {
	line := "State    " + st.GetDir()
	switch {
	case st.GetSaved() != nil:
		line += fmt.Sprintf(", saved %s ago", ago(tsTime(st.GetSaved()), now))
	default:
		line += ", not saved yet"
	}
	if st.GetRestored() {
		line += ", restored at start"
	}
	if st.GetLost() {
		aside := "it could not be moved aside"
		if st.GetSetAside() != "" {
			aside = "kept as " + st.GetSetAside()
		}
		line += fmt.Sprintf("; LOST AT START: %s (%s): overrides and history from before the start are gone", st.GetLoadError(), aside)
	}
	if st.GetSaveError() != "" {
		line += fmt.Sprintf("; NOT SAVED (%d failures): %s: overrides and history would not survive a restart", st.GetSaveFailures(), st.GetSaveError())
	}
	return line
}
