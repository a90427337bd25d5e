package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/routing/kernel"
)

// realServerUsage is printed for a usage error.
const realServerUsage = `usage: directord realserver <command> [flags]

Prepare a direct-routing real server: each VIP on lo (so the server accepts
the VIP's packets) and the ARP sysctls arp_ignore=1, arp_announce=2 (so it
never answers ARP for the VIP). The VIPs are recorded in the state directory;
the directord-realserver unit binds them again at boot.

commands:
  add VIP      bind VIP and set the ARP sysctls (idempotent)
  remove VIP   unbind VIP; after the last one, restore the ARP sysctls (idempotent)
  list         print the recorded VIPs and whether each is bound
  apply        bind every recorded VIP and set the sysctls again (used at boot)

flags (add, before or after the VIP):
  -interface NAME   where VIPs go (default lo; recorded with the first VIP)
  -binding MODE     auto | address (Linux 6.1+) | local-route (default auto; recorded)
flags (every command):
  -state-dir DIR    where the record is kept (default /var/lib/directord)
`

// realServerCmd is one invocation of `directord realserver`.
type realServerCmd struct {
	stdout, stderr io.Writer
	stateDir       string
	// proc is the sysctl tree (/proc/sys); unit tests point it elsewhere.
	proc string
	// open returns the VIP binder for a record; unit tests use a fake.
	open func(rec *realServerRecord) (vipSetter, error)
}

// vipSetter is the part of *kernel.VIPs realserver uses.
type vipSetter interface {
	Set(ctx context.Context, vips []netip.Addr) error
	Owned(ctx context.Context) ([]netip.Addr, error)
	Close() error
}

// cmdRealServer is `directord realserver add|remove|list|apply`.
func cmdRealServer(args []string, stdout, stderr io.Writer) int {
	rs := &realServerCmd{stdout: stdout, stderr: stderr, proc: "/proc/sys", open: openVIPs}
	return rs.run(args)
}

// openVIPs opens the kernel VIP binder a record describes.
func openVIPs(rec *realServerRecord) (vipSetter, error) {
	b := kernel.BindAddress
	if rec.Binding == config.BindingLocalRoute.String() {
		b = kernel.BindLocalRoute
	}
	log := slog.New(slog.DiscardHandler)
	v, err := kernel.NewVIPs(log, kernel.VIPOptions{Interface: rec.Interface, Protocol: config.DefaultKernelProtocol, Binding: b})
	if err != nil {
		return nil, fmt.Errorf("interface %s: %w", rec.Interface, err)
	}
	return v, nil
}

func (rs *realServerCmd) run(args []string) int {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		if len(args) > 0 && (args[0] == "-vip" || strings.HasPrefix(args[0], "-vip=")) {
			fmt.Fprintln(rs.stderr, "directord realserver: -vip is gone; bind one VIP at a time with: directord realserver add VIP")
		}
		fmt.Fprint(rs.stderr, realServerUsage)
		return exitUsage
	}
	sub, rest := args[0], args[1:]
	fs, stateDir, iface, binding := realServerFlags()
	fs.SetOutput(io.Discard)
	pos, err := parseInterspersed(fs, rest)
	if err != nil {
		fmt.Fprintf(rs.stderr, "directord realserver %s: %v\n\n%s", sub, err, realServerUsage)
		return exitUsage
	}
	rs.stateDir = *stateDir
	want := map[string]int{"add": 1, "remove": 1, "list": 0, "apply": 0}
	n, known := want[sub]
	if !known || len(pos) != n {
		fmt.Fprintf(rs.stderr, "directord realserver: %s\n\n%s", badRealServerArgs(sub, known, n, pos), realServerUsage)
		return exitUsage
	}
	var vip netip.Addr
	if n == 1 {
		if vip, err = netip.ParseAddr(pos[0]); err != nil {
			fmt.Fprintf(rs.stderr, "directord realserver %s: %q is not an IP address\n", sub, pos[0])
			return exitUsage
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	switch sub {
	case "add":
		err = rs.add(ctx, vip, *iface, *binding)
	case "remove":
		err = rs.remove(ctx, vip)
	case "list":
		err = rs.list(ctx)
	case "apply":
		err = rs.apply(ctx)
	}
	if err != nil {
		fmt.Fprintf(rs.stderr, "directord realserver %s: %v\n", sub, err)
		return exitFail
	}
	return exitOK
}

// realServerFlags defines realserver's flags (also read by the manual page
// and the shell completion).
func realServerFlags() (fs *flag.FlagSet, stateDir, iface, binding *string) {
	fs = flag.NewFlagSet("realserver", flag.ContinueOnError)
	stateDir = fs.String("state-dir", config.DefaultStateDir, "where the record of the VIPs is kept")
	iface = fs.String("interface", "", "where VIPs go (add; default lo, recorded with the first VIP)")
	binding = fs.String("binding", "auto", "auto, address (Linux 6.1+) or local-route (add; recorded with the first VIP)")
	return fs, stateDir, iface, binding
}

// badRealServerArgs explains a wrong command or argument count.
func badRealServerArgs(sub string, known bool, n int, pos []string) string {
	switch {
	case !known:
		return fmt.Sprintf("unknown command %q", sub)
	case n == 1 && len(pos) == 0:
		return fmt.Sprintf("%s needs a VIP", sub)
	case n == 1:
		return fmt.Sprintf("%s takes one VIP at a time, got %d arguments", sub, len(pos))
	}
	return fmt.Sprintf("%s takes no arguments, got %q", sub, pos)
}

// parseInterspersed parses flags before and after positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// add binds vip, sets the ARP sysctls and records it.
func (rs *realServerCmd) add(ctx context.Context, vip netip.Addr, iface, binding string) error {
	rec, err := rs.loadOrCreate(iface, binding)
	if err != nil {
		return err
	}
	if err := rs.setSysctls(); err != nil {
		return err
	}
	already, err := rs.bind(ctx, rec, vip, true)
	if err != nil {
		return err
	}
	if already {
		fmt.Fprintf(rs.stdout, "%s was already bound on %s (%s); arp_ignore=1 arp_announce=2\n", vip, rec.Interface, rec.Binding)
	} else {
		fmt.Fprintf(rs.stdout, "bound %s on %s (%s); arp_ignore=1 arp_announce=2\n", vip, rec.Interface, rec.Binding)
	}
	return nil
}

// remove unbinds vip; after the last VIP it restores the sysctls.
func (rs *realServerCmd) remove(ctx context.Context, vip netip.Addr) error {
	rec, err := rs.load()
	if err != nil {
		return err
	}
	if rec == nil {
		fmt.Fprintf(rs.stdout, "%s is not bound: nothing is recorded in %s\n", vip, rs.recordPath())
		return nil
	}
	had, err := rs.bind(ctx, rec, vip, false)
	if err != nil {
		return err
	}
	if !had {
		fmt.Fprintf(rs.stdout, "%s was not bound by directord; nothing changed\n", vip)
	} else {
		fmt.Fprintf(rs.stdout, "unbound %s from %s\n", vip, rec.Interface)
	}
	if len(rec.VIPs) > 0 {
		return nil
	}
	if err := rs.restoreSysctls(rec); err != nil {
		return err
	}
	fmt.Fprintln(rs.stdout, "no VIP left: restored arp_ignore and arp_announce and removed the record")
	return removeRecord(rs.recordPath())
}

// bind adds (or removes) vip among the VIPs this tool owns and records the
// result; it reports whether vip was among them before. The owned set is the
// record plus what the kernel marks as ours, so a VIP bound by an earlier
// version of this command is kept, not removed.
func (rs *realServerCmd) bind(ctx context.Context, rec *realServerRecord, vip netip.Addr, add bool) (bool, error) {
	v, err := rs.open(rec)
	if err != nil {
		return false, err
	}
	defer v.Close()
	owned, err := v.Owned(ctx)
	if err != nil {
		return false, err
	}
	set := map[netip.Addr]bool{}
	for _, a := range append(owned, rec.VIPs...) {
		set[a] = true
	}
	had := set[vip]
	set[vip] = add
	rec.VIPs = rec.VIPs[:0]
	for a, keep := range set {
		if keep {
			rec.VIPs = append(rec.VIPs, a)
		}
	}
	slices.SortFunc(rec.VIPs, netip.Addr.Compare)
	if add { // record first: a VIP bound but not recorded would not come back at boot
		if err := writeRecord(rs.recordPath(), rec); err != nil {
			return had, err
		}
	}
	if err := v.Set(ctx, rec.VIPs); err != nil {
		return had, err
	}
	if !add && len(rec.VIPs) > 0 {
		return had, writeRecord(rs.recordPath(), rec)
	}
	return had, nil
}

// list prints the record and whether each VIP is bound now.
func (rs *realServerCmd) list(ctx context.Context) error {
	rec, err := rs.load()
	if err != nil {
		return err
	}
	if rec == nil {
		fmt.Fprintf(rs.stdout, "no VIPs recorded (%s does not exist)\n", rs.recordPath())
		return nil
	}
	v, err := rs.open(rec)
	if err != nil {
		return err
	}
	defer v.Close()
	owned, err := v.Owned(ctx)
	if err != nil {
		return err
	}
	fmt.Fprintf(rs.stdout, "VIPs on %s (%s binding), recorded in %s:\n", rec.Interface, rec.Binding, rs.recordPath())
	for _, a := range rec.VIPs {
		state := "bound"
		if !slices.Contains(owned, a) {
			state = "NOT bound (run: directord realserver apply)"
		}
		fmt.Fprintf(rs.stdout, "  %s  %s\n", a, state)
	}
	fmt.Fprintf(rs.stdout, "ARP sysctls: %s\n", rs.currentSysctls())
	return nil
}

// apply binds every recorded VIP and sets the sysctls again (at boot).
func (rs *realServerCmd) apply(ctx context.Context) error {
	rec, err := rs.load()
	if err != nil {
		return err
	}
	if rec == nil {
		fmt.Fprintf(rs.stdout, "no VIPs recorded in %s; nothing to do\n", rs.recordPath())
		return nil
	}
	if err := rs.setSysctls(); err != nil {
		return err
	}
	v, err := rs.open(rec)
	if err != nil {
		return err
	}
	defer v.Close()
	if err := v.Set(ctx, rec.VIPs); err != nil {
		return err
	}
	fmt.Fprintf(rs.stdout, "bound %d VIP(s) on %s (%s); arp_ignore=1 arp_announce=2\n", len(rec.VIPs), rec.Interface, rec.Binding)
	return nil
}
