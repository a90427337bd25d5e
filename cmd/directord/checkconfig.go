package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/routing"
)

// cmdCheckConfig validates a configuration file and prints the desired state
// it expands to, or every error and exit code 2.
func cmdCheckConfig(args []string, stdout, stderr io.Writer) int {
	fs, quiet, flagPath := checkConfigFlags()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	path, ok := checkConfigPath(*flagPath, fs.Args())
	if !ok {
		fmt.Fprintln(stderr, "usage: directord check-config [-q] FILE  or  directord check-config [-q] -config FILE")
		return exitUsage
	}
	cfg, err := config.Load(path)
	if err != nil {
		printConfigErrors(stderr, err)
		return exitUsage
	}
	for _, w := range cfg.Warnings {
		fmt.Fprintln(stderr, "warning: "+w.Error())
	}
	if !*quiet {
		describe(stdout, cfg)
	}
	return exitOK
}

// checkConfigFlags defines check-config's flags (also read by the manual
// page and the shell completion).
func checkConfigFlags() (*flag.FlagSet, *bool, *string) {
	fs := flag.NewFlagSet("check-config", flag.ContinueOnError)
	quiet := fs.Bool("q", false, "print nothing on success")
	flagPath := fs.String("config", "", "configuration `file` (as for run; or give FILE as the argument)")
	return fs, quiet, flagPath
}

// checkConfigPath picks the file from -config or the single argument; giving
// both, or neither, is a usage error.
func checkConfigPath(flagPath string, args []string) (string, bool) {
	switch {
	case flagPath != "" && len(args) == 0:
		return flagPath, true
	case flagPath == "" && len(args) == 1:
		return args[0], true
	}
	return "", false
}

// printConfigErrors prints a load error, one problem per line.
func printConfigErrors(w io.Writer, err error) {
	var errs config.Errors
	if errors.As(err, &errs) {
		for _, e := range errs {
			fmt.Fprintln(w, e.Error())
		}
		fmt.Fprintf(w, "%d error(s)\n", len(errs))
		return
	}
	fmt.Fprintln(w, err)
}

// describe prints the configuration with its defaults and the IPVS services
// and routes it leads to once every backend is healthy.
func describe(w io.Writer, cfg *config.Config) {
	d := cfg.Director
	fmt.Fprintf(w, "# %s (digest %s): valid\n", cfg.Source, cfg.Digest)
	fmt.Fprintf(w, "director %s: announce %s, VIPs on %s, hold-down %s, drain delay %s, resync %s (withdraw all after %d failed), graceful shutdown %s, linger %s\n",
		d.Name, d.Announce, d.VIPInterface, d.HoldDown, d.DrainDelay, d.ResyncInterval, d.MaxFailedResyncs, d.GracefulShutdown, d.Linger)
	fmt.Fprintf(w, "state: %s; VIP binding %s\n", d.StateDir, d.VIPBinding)
	fmt.Fprintf(w, "api: socket %s", cfg.API.Socket)
	if cfg.API.TCP != nil {
		fmt.Fprintf(w, ", mTLS on %s", cfg.API.TCP.Listen)
	}
	fmt.Fprintf(w, "; metrics: %s\n", orNone(cfg.Metrics.Listen))
	if b := cfg.BGP; b != nil {
		fmt.Fprintf(w, "bgp: asn %d, router-id %s, listen port %d", b.ASN, b.RouterID, b.ListenPort)
		if gr := b.GracefulRestart; gr != nil {
			fmt.Fprintf(w, ", graceful restart %s (SIGTERM keeps the routes for a restart: drain first to take the director out)", gr.RestartTime)
		}
		fmt.Fprintln(w)
		for _, p := range b.Peers {
			fmt.Fprintf(w, "  peer %s asn %d: hold %s keepalive %s connect-retry %s idle-hold %s", p.Address, p.ASN,
				p.HoldTime, p.Keepalive, p.ConnectRetry, p.IdleHoldAfterReset)
			if p.BFD != nil {
				fmt.Fprintf(w, ", bfd %s x%d", p.BFD.MinInterval, p.BFD.Multiplier)
			}
			if p.Password != "" {
				fmt.Fprintf(w, ", md5 (from %s)", p.PasswordFrom)
			}
			if p.Passive {
				fmt.Fprint(w, ", passive")
			}
			fmt.Fprintln(w)
		}
	}
	if y := cfg.IPVS.Sync; y != nil {
		size := "from the MTU"
		if y.MaxMessage != 0 {
			size = fmt.Sprint(y.MaxMessage)
		}
		fmt.Fprintf(w, "ipvs sync: master and backup on %s, sync id %d, group %s port %d ttl %d, max message %s\n",
			y.Interface, y.SyncID, y.Group, y.Port, y.TTL, size)
	}
	fmt.Fprintln(w, "services:")
	for i := range cfg.Services {
		s := &cfg.Services[i]
		fmt.Fprintf(w, "  %s %s/%s:%d forwarding %s", s.Name, s.Protocol, s.VIP, s.Port, s.Forwarding)
		if s.Forwarding != config.ForwardLocal {
			fmt.Fprintf(w, " scheduler %s %v persistence %s", s.Scheduler, s.SchedulerFlags, s.Persistence)
		}
		fmt.Fprintf(w, " min_healthy %d\n", s.MinHealthy)
		h := s.Health
		fmt.Fprintf(w, "    health %s every %s timeout %s rise %d fall %d\n", h.Type, h.Interval, h.Timeout, h.Rise, h.Fall)
	}
	p := announcer.Expected(cfg)
	fmt.Fprintln(w, "health targets:")
	for _, t := range announcer.Targets(cfg) {
		fmt.Fprintf(w, "  %s %s every %s\n", t.Spec.Type, netipPort(t.Addr.String(), t.Port), t.Spec.Interval)
	}
	fmt.Fprintln(w, "IPVS when every backend is healthy (ipvsadm-save syntax):")
	for _, s := range p.IPVS {
		fmt.Fprintln(w, "  "+ipvsadmService(s))
		for _, dst := range s.Destinations {
			fmt.Fprintln(w, "  "+ipvsadmDest(s.Key, dst))
		}
	}
	fmt.Fprintln(w, "routes when every backend is healthy:")
	for _, v := range p.VIPs {
		fmt.Fprintf(w, "  %s%s (services %s)\n", v.Ad.Prefix, adAttrs(v.Ad), strings.Join(v.Services, ", "))
	}
}

func orNone(s string) string {
	if s == "" {
		return "off"
	}
	return s
}

// netipPort formats host:port, bracketing IPv6.
func netipPort(host string, port uint16) string {
	if strings.Contains(host, ":") {
		return fmt.Sprintf("[%s]:%d", host, port)
	}
	return fmt.Sprintf("%s:%d", host, port)
}

func ipvsadmProto(k ipvs.Key) string {
	if k.Protocol == 17 {
		return "-u"
	}
	return "-t"
}

func ipvsadmService(s ipvs.Service) string {
	line := fmt.Sprintf("-A %s %s -s %s", ipvsadmProto(s.Key), netipPort(s.Key.VIP.String(), s.Key.Port), s.Scheduler)
	if len(s.Flags) > 0 {
		line += " -b " + strings.Join(s.Flags, ",")
	}
	if s.Persistence > 0 {
		line += fmt.Sprintf(" -p %d", int(s.Persistence/time.Second))
	}
	return line
}

func ipvsadmDest(k ipvs.Key, d ipvs.Destination) string {
	method := map[ipvs.Forwarding]string{ipvs.DirectRoute: "-g", ipvs.Masquerade: "-m", ipvs.Tunnel: "-i"}[d.Forwarding]
	return fmt.Sprintf("-a %s %s -r %s %s -w %d", ipvsadmProto(k), netipPort(k.VIP.String(), k.Port),
		netipPort(d.Address.String(), d.Port), method, d.Weight)
}

// adAttrs renders an advertisement's attributes.
func adAttrs(ad routing.Advertisement) string {
	var parts []string
	for _, c := range ad.Communities {
		parts = append(parts, fmt.Sprintf("community %d:%d", c>>16, c&0xffff))
	}
	for _, c := range ad.LargeCommunities {
		parts = append(parts, fmt.Sprintf("large-community %d:%d:%d", c[0], c[1], c[2]))
	}
	if ad.MED != nil {
		parts = append(parts, fmt.Sprintf("med %d", *ad.MED))
	}
	if ad.ASPathPrepend > 0 {
		parts = append(parts, fmt.Sprintf("prepend %d", ad.ASPathPrepend))
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}
