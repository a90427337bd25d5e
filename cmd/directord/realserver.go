package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/routing/kernel"
)

// arpSysctls returns what a direct-routing real server needs so that the VIP on
// its loopback never answers ARP on the shared segment (only the directors'
// router-facing side may attract the VIP's traffic):
//   - arp_ignore=1: answer ARP only for addresses on the interface the request
//     came in on, so the VIP on lo stays silent on eth0;
//   - arp_announce=2: never use the VIP as the source of our own ARP requests,
//     so neighbours do not learn VIP -> this server's MAC.
//
// The kernel uses the larger of conf/all and conf/<dev>, so setting "all"
// covers every interface, present and future.
func arpSysctls() [2]struct{ name, value string } {
	return [2]struct{ name, value string }{
		{"net/ipv4/conf/all/arp_ignore", "1"},
		{"net/ipv4/conf/all/arp_announce", "2"},
	}
}

// realServerState records the sysctl values found before the first setup, so
// -undo restores them instead of guessing.
type realServerState struct {
	Previous map[string]string `json:"previous"`
}

// cmdRealServer prepares (or with -undo, unprepares) a DR real server: the
// VIPs on the loopback and the ARP sysctls. It is idempotent.
func cmdRealServer(args []string, stdout, stderr io.Writer) int {
	fset := flag.NewFlagSet("realserver", flag.ContinueOnError)
	fset.SetOutput(stderr)
	var vips vipList
	fset.Var(&vips, "vip", "a VIP to bind (repeat the flag or separate with commas)")
	iface := fset.String("interface", "lo", "where the VIPs go")
	undo := fset.Bool("undo", false, "remove the VIPs this command bound and restore the ARP sysctls")
	state := fset.String("state", "/run/directord/realserver.json", "where the previous sysctl values are kept for -undo")
	proc := fset.String("proc", "/proc/sys", "the sysctl tree (for tests)")
	if err := fset.Parse(args); err != nil {
		return exitUsage
	}
	for _, a := range fset.Args() {
		if err := vips.Set(a); err != nil {
			fmt.Fprintf(stderr, "directord realserver: %v\n", err)
			return exitUsage
		}
	}
	if len(vips) == 0 && !*undo {
		fmt.Fprintln(stderr, "usage: directord realserver -vip ADDR [-vip ADDR...] [-interface lo] | -undo")
		return exitUsage
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	v, err := kernel.NewVIPs(log, kernel.VIPOptions{Interface: *iface, Protocol: config.DefaultKernelProtocol})
	if err != nil {
		fmt.Fprintf(stderr, "directord realserver: interface %s: %v\n", *iface, err)
		return exitFail
	}
	defer v.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if *undo {
		err = undoRealServer(ctx, v, *proc, *state)
	} else {
		err = setupRealServer(ctx, v, vips, *proc, *state)
	}
	if err != nil {
		fmt.Fprintf(stderr, "directord realserver: %v\n", err)
		return exitFail
	}
	if *undo {
		fmt.Fprintf(stdout, "removed the VIPs bound by directord on %s and restored the ARP sysctls\n", *iface)
	} else {
		fmt.Fprintf(stdout, "bound %s on %s; arp_ignore=1 arp_announce=2\n", vips, *iface)
	}
	return exitOK
}

func setupRealServer(ctx context.Context, v *kernel.VIPs, vips vipList, proc, statePath string) error {
	st := realServerState{Previous: map[string]string{}}
	if _, err := os.Stat(statePath); errors.Is(err, fs.ErrNotExist) {
		for _, s := range arpSysctls() {
			old, err := os.ReadFile(filepath.Join(proc, s.name))
			if err != nil {
				return fmt.Errorf("read sysctl %s: %w", s.name, err)
			}
			st.Previous[s.name] = strings.TrimSpace(string(old))
		}
		if err := writeState(statePath, st); err != nil {
			return err
		}
	}
	for _, s := range arpSysctls() {
		if err := os.WriteFile(filepath.Join(proc, s.name), []byte(s.value), 0o644); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w (run as root)", s.name, s.value, err)
		}
	}
	return v.Set(ctx, vips)
}

func undoRealServer(ctx context.Context, v *kernel.VIPs, proc, statePath string) error {
	if err := v.Set(ctx, nil); err != nil {
		return err
	}
	data, err := os.ReadFile(statePath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing recorded: the sysctls were never changed by us
	}
	if err != nil {
		return err
	}
	var st realServerState
	if err := json.Unmarshal(data, &st); err != nil {
		return fmt.Errorf("%s is corrupt (%v): restore arp_ignore/arp_announce by hand and delete it", statePath, err)
	}
	for name, val := range st.Previous {
		if _, err := strconv.Atoi(val); err != nil {
			return fmt.Errorf("%s: bad value %q for %s", statePath, val, name)
		}
		if err := os.WriteFile(filepath.Join(proc, name), []byte(val), 0o644); err != nil {
			return fmt.Errorf("restore sysctl %s=%s: %w", name, val, err)
		}
	}
	return os.Remove(statePath)
}

func writeState(path string, st realServerState) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return os.WriteFile(path, data, 0o644)
}

// vipList is a repeatable, comma-separated -vip flag.
type vipList []netip.Addr

func (l vipList) String() string {
	var s []string
	for _, a := range l {
		s = append(s, a.String())
	}
	return strings.Join(s, ",")
}

func (l *vipList) Set(v string) error {
	for _, part := range strings.Split(v, ",") {
		a, err := netip.ParseAddr(strings.TrimSpace(part))
		if err != nil {
			return fmt.Errorf("-vip %q is not an IP address", part)
		}
		*l = append(*l, a)
	}
	return nil
}
