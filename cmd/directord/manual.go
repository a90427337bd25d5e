package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/anycast-director/director/internal/buildinfo"
	"github.com/anycast-director/director/internal/manpage"
)

// command describes a subcommand for the help, the manual page and the shell
// completion; the flags come from the same constructor the command parses
// with, so the three cannot drift.
type command struct {
	name     string
	args     string // synopsis after the name
	summary  string
	detail   string // manual page text
	flags    func() *flag.FlagSet
	subs     []string // sub-commands (realserver)
	fileArgs bool     // positional arguments are files
}

// commands lists directord's subcommands in help order.
func commands() []command {
	return []command{
		{name: "run", args: "[-config FILE]", summary: "run the daemon (SIGHUP reloads, SIGTERM withdraws gracefully and exits)",
			detail: "Runs the daemon with the configuration FILE (default /etc/directord/directord.yaml): health checks, IPVS, VIP binding and announcements. Under systemd it notifies readiness after the first reconcile pass and feeds the watchdog while the announcer loop finishes passes.",
			flags:  func() *flag.FlagSet { fs, _ := runFlags(); return fs }, fileArgs: true},
		{name: "check-config", args: "[-q] [-config] FILE", summary: "validate FILE and print the expanded desired state (exit 2 on errors)",
			detail: "Validates FILE as the daemon would (every error with file, line and field path) and prints the configuration with its defaults, the IPVS services and the routes it leads to once every backend is healthy. Secrets are never printed.",
			flags:  func() *flag.FlagSet { fs, _, _ := checkConfigFlags(); return fs }, fileArgs: true},
		{name: "router-config", args: "[-flavor frr|bird] [flags] FILE...", summary: "print the upstream routers' peering configuration",
			detail: "Prints the routers' side of the peering for one or more director configurations: neighbors with matching timers, BFD, ECMP, an import filter that accepts only the configured VIPs, MD5 keys, and OSPF for announce: kernel.",
			flags:  func() *flag.FlagSet { fs, _ := routerConfigFlags(); return fs }, fileArgs: true},
		{name: "realserver", args: "add VIP | remove VIP | list | apply [flags]", summary: "a DR real server's VIPs on lo and ARP sysctls, one VIP at a time",
			detail: "Prepares a direct-routing real server: add binds one VIP on lo and sets arp_ignore=1 and arp_announce=2; remove unbinds one (the last one restores the sysctls); list shows the recorded VIPs; apply binds them all again (the directord-realserver unit runs it at boot). Both add and remove are idempotent; the record lives in the state directory.",
			flags:  func() *flag.FlagSet { fs, _, _, _ := realServerFlags(); return fs }, subs: []string{"add", "remove", "list", "apply"}},
		{name: "completion", args: "bash|zsh|fish", summary: "print the shell completion script",
			detail: "Prints the completion script for the shell; the package installs them.", subs: []string{"bash", "zsh", "fish"}},
		{name: "version", summary: "print the version, commit, Go version and build date (also --version)"},
	}
}

// usage prints the command list.
func usage(w io.Writer) {
	fmt.Fprint(w, "usage: directord <command> [flags]\n\ncommands:\n")
	for _, c := range commands() {
		head := c.name
		if c.args != "" {
			head += " " + c.args
		}
		if len(head) > 38 {
			fmt.Fprintf(w, "  %s\n  %-38s %s\n", head, "", c.summary)
			continue
		}
		fmt.Fprintf(w, "  %-38s %s\n", head, c.summary)
	}
}

// flagsOf lists a flag set's flags in order.
func flagsOf(fs *flag.FlagSet) []*flag.Flag {
	var out []*flag.Flag
	fs.VisitAll(func(f *flag.Flag) { out = append(out, f) })
	return out
}

// writeManual writes directord(8).
func writeManual(w io.Writer) error {
	b := buildinfo.Get()
	p := manpage.New(w, "directord", 8, manualDate(b), b.Version,
		"Anycast Director daemon: health checks, IPVS and VIP announcements")
	p.Section("SYNOPSIS")
	for _, c := range commands() {
		p.Synopsis("directord", strings.TrimSpace(c.name+" "+c.args))
	}
	p.Section("DESCRIPTION")
	p.Para("directord health-checks real servers, programs Linux IPVS (direct routing, NAT or IP-in-IP) so that a VIP's traffic spreads over the healthy ones, and announces the VIP to the upstream routers over BGP (embedded, with BFD) or OSPF (through a local FRR or BIRD) only while it can serve it. Routers spread traffic over every announcing director (ECMP).")
	p.Section("COMMANDS")
	for _, c := range commands() {
		text := c.detail
		if text == "" {
			text = c.summary + "."
		}
		p.Term(manpage.Bold(c.name)+" "+manpage.Escape(c.args), manpage.Escape(text))
		if c.flags == nil {
			continue
		}
		p.Indent()
		for _, f := range flagsOf(c.flags()) {
			name, use := flag.UnquoteUsage(f)
			term := manpage.Bold("-"+f.Name) + " " + manpage.Italic(name)
			text := use
			if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" {
				text += " (default " + f.DefValue + ")"
			}
			p.Term(term, manpage.Escape(text))
		}
		p.Outdent()
	}
	p.Section("SIGNALS")
	p.Term(manpage.Bold("SIGHUP"), manpage.Escape("Reload the configuration file. A file with errors is rejected as a whole and the running configuration stays."))
	p.Term(manpage.Bold("SIGTERM, SIGINT"), manpage.Escape("Withdraw every VIP gracefully (GRACEFUL_SHUTDOWN community for director.graceful_shutdown), keep forwarding for director.linger, end the BGP sessions and exit 0. IPVS state and bound VIPs stay for the next start, which adopts them."))
	p.Section("FILES")
	p.Term(manpage.Bold("/etc/directord/directord.yaml"), manpage.Escape("The configuration, see directord.yaml(5)."))
	p.Term(manpage.Bold("/var/lib/directord"), manpage.Escape("State kept across restarts and reboots (director.state_dir), such as the real server record realserver.json."))
	p.Term(manpage.Bold("/run/directord/directord.sock"), manpage.Escape("The API socket used by directorctl(8)."))
	p.Section("EXIT STATUS")
	p.Para("0 on success, 1 on a runtime failure (including a missing capability, which is named), 2 on bad usage or an invalid configuration.")
	p.Section("SEE ALSO")
	p.Roff(manpage.Bold("directorctl") + "(8), " + manpage.Bold("directord.yaml") + "(5), " + manpage.Bold("ipvsadm") + "(8), " + manpage.Bold("systemd.service") + "(5)")
	return p.Err()
}

// writeConfigManual writes directord.yaml(5) from the configuration
// reference (docs/configuration.md).
func writeConfigManual(w io.Writer, markdown string) error {
	b := buildinfo.Get()
	p := manpage.New(w, "directord.yaml", 5, manualDate(b), b.Version, "configuration file of the Anycast Director daemon")
	p.Section("SYNOPSIS")
	p.Para("/etc/directord/directord.yaml")
	p.Section("DESCRIPTION")
	p.Para("directord(8) reads one YAML file. An annotated example is installed as /usr/share/doc/directord/examples/directord.yaml; check a file with: directord check-config FILE.")
	p.Markdown(markdown)
	p.Section("SEE ALSO")
	p.Roff(manpage.Bold("directord") + "(8), " + manpage.Bold("directorctl") + "(8)")
	return p.Err()
}

// manualDate is the build day, or the commit's, for the page's title line.
func manualDate(b buildinfo.Info) string {
	if len(b.Date) >= 10 {
		return b.Date[:10]
	}
	return "unknown"
}

// cmdManual is the hidden `directord __man [CONFIG.md]`, used by
// `make package`: directord(8), or directord.yaml(5) from the given
// configuration reference.
func cmdManual(args []string, stdout, stderr io.Writer) int {
	var err error
	switch len(args) {
	case 0:
		err = writeManual(stdout)
	case 1:
		var md []byte
		if md, err = os.ReadFile(args[0]); err == nil {
			err = writeConfigManual(stdout, string(md))
		}
	default:
		fmt.Fprintln(stderr, "usage: directord __man [docs/configuration.md]")
		return exitUsage
	}
	if err != nil {
		fmt.Fprintf(stderr, "directord __man: %v\n", err)
		return exitFail
	}
	return exitOK
}
