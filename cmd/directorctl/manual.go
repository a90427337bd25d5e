package main

import (
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/anycast-director/director/internal/buildinfo"
	"github.com/anycast-director/director/internal/manpage"
)

// manualCmd is the hidden `directorctl __man`: directorctl(8) from the
// command tree, for `make package`.
func (a *app) manualCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "__man",
		Short:  "Print the directorctl(8) manual page",
		Hidden: true,
		Args:   exactArgs(0, "no arguments"),
		RunE: func(cmd *cobra.Command, _ []string) error {
			return writeManual(a.stdout, a.root)
		},
	}
}

// writeManual writes directorctl(8): the root's description and global
// flags, then every visible command with its own flags.
func writeManual(w interface{ Write([]byte) (int, error) }, root *cobra.Command) error {
	b := buildinfo.Get()
	date := "unknown"
	if len(b.Date) >= 10 {
		date = b.Date[:10]
	}
	p := manpage.New(w, "directorctl", 8, date, b.Version, strings.TrimSuffix(root.Short, "."))
	p.Section("SYNOPSIS")
	p.Synopsis("directorctl", "[global flags] command [flags] [arguments]")
	p.Section("DESCRIPTION")
	for _, para := range strings.Split(root.Long, "\n\n") {
		p.Para(strings.Join(strings.Fields(para), " "))
	}
	p.Section("GLOBAL FLAGS")
	writeFlags(p, root.PersistentFlags())
	p.Section("COMMANDS")
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || !sub.IsAvailableCommand() {
				continue
			}
			if sub.Runnable() {
				path := strings.TrimPrefix(sub.CommandPath(), "directorctl ")
				use := strings.TrimPrefix(sub.Use, sub.Name())
				p.Term(manpage.Bold(path)+manpage.Escape(use), manpage.Escape(sub.Short+"."))
				// cobra's own completion commands carry a long how-to; the
				// package installs the scripts, so the summary is enough.
				if long := strings.TrimSpace(sub.Long); long != "" && c.Name() != "completion" {
					for _, para := range strings.Split(long, "\n\n") {
						p.Indent()
						p.Para(strings.Join(strings.Fields(para), " "))
						p.Outdent()
					}
				}
				p.Indent()
				writeFlags(p, sub.LocalNonPersistentFlags())
				p.Outdent()
			}
			walk(sub)
		}
	}
	walk(root)
	p.Section("EXIT STATUS")
	p.Para("0 on success; 1 when the request failed or directord could not be reached; 2 on a usage error, including a request directord rejected as malformed.")
	p.Section("FILES")
	p.Term(manpage.Bold("/run/directord/directord.sock"), manpage.Escape("directord's API socket (mode 0600): run directorctl as root or as the user directord runs as."))
	p.Section("SEE ALSO")
	p.Roff(manpage.Bold("directord") + "(8), " + manpage.Bold("directord.yaml") + "(5)")
	return p.Err()
}

// writeFlags lists flags as tagged paragraphs (help flags left out).
func writeFlags(p *manpage.Page, fs *pflag.FlagSet) {
	fs.VisitAll(func(f *pflag.Flag) {
		if f.Hidden || f.Name == "help" {
			return
		}
		name, usage := pflag.UnquoteUsage(f)
		term := manpage.Bold("--" + f.Name)
		if f.Shorthand != "" {
			term = manpage.Bold("-"+f.Shorthand) + ", " + term
		}
		if name != "" {
			term += " " + manpage.Italic(name)
		}
		if f.DefValue != "" && f.DefValue != "false" && f.DefValue != "0" && f.DefValue != "[]" && f.DefValue != "0s" {
			usage += " (default " + f.DefValue + ")"
		}
		p.Term(term, manpage.Escape(usage))
	})
}
