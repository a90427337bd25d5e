package compare

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// Writes counts IPVS changes the kernel carried out, by kind. They are counted
// in the kernel with kprobes, whichever interface a daemon uses (netlink or
// setsockopt), so neither daemon's own log is trusted.
type Writes struct {
	// AddService, EditService, AddDest, EditDest, DelDest count the kernel's
	// ip_vs_add_service ... ip_vs_del_dest calls.
	AddService, EditService, AddDest, EditDest, DelDest int64
	// Commands counts every IPVS set command (netlink and setsockopt),
	// including those the others do not name (service deletes, flushes).
	Commands int64
}

// Sub returns w minus o.
func (w Writes) Sub(o Writes) Writes {
	return Writes{AddService: w.AddService - o.AddService, EditService: w.EditService - o.EditService,
		AddDest: w.AddDest - o.AddDest, EditDest: w.EditDest - o.EditDest, DelDest: w.DelDest - o.DelDest,
		Commands: w.Commands - o.Commands}
}

// String renders the non-zero counts.
func (w Writes) String() string {
	var parts []string
	for _, f := range []struct {
		n    int64
		name string
	}{{w.AddService, "add service"}, {w.EditService, "edit service"}, {w.AddDest, "add dest"},
		{w.EditDest, "edit dest"}, {w.DelDest, "del dest"}} {
		if f.n != 0 {
			parts = append(parts, fmt.Sprintf("%d %s", f.n, f.name))
		}
	}
	if len(parts) == 0 {
		return fmt.Sprintf("%d commands", w.Commands)
	}
	return fmt.Sprintf("%d commands (%s)", w.Commands, strings.Join(parts, ", "))
}

// probes maps each counted kernel function to its Writes field.
var probes = []struct {
	fn    string
	field func(*Writes) *int64
}{
	{"ip_vs_add_service", func(w *Writes) *int64 { return &w.AddService }},
	{"ip_vs_edit_service", func(w *Writes) *int64 { return &w.EditService }},
	{"ip_vs_add_dest", func(w *Writes) *int64 { return &w.AddDest }},
	{"ip_vs_edit_dest", func(w *Writes) *int64 { return &w.EditDest }},
	{"ip_vs_del_dest", func(w *Writes) *int64 { return &w.DelDest }},
	{"ip_vs_genl_set_cmd", func(w *Writes) *int64 { return &w.Commands }},
	{"do_ip_vs_set_ctl", func(w *Writes) *int64 { return &w.Commands }},
}

// writeCounter owns the kprobes that count IPVS writes.
type writeCounter struct {
	dir    string // tracefs
	prefix string // event name prefix
}

// newWriteCounter mounts tracefs if needed and enables one kprobe per
// counted function. The kprobe hit counts come from kprobe_profile.
//
// Every kprobe armed, optimized, unoptimized or disarmed patches kernel
// text, and each patch waits for every CPU to answer an interrupt. Under
// emulation that wait once never ended: the guest soft-locked ("CPU#0 stuck
// for 730s" in the test binary) and the VM ran into its time limit, and
// another run hung after its last figure, where the kprobes were removed.
// So the kprobes are only armed, once per boot: jump optimization (a
// second round of patches, from a kernel worker, while the daemons run) is
// turned off first, and they stay armed for the rest of the boot,
// which the VM discards. A later counter with the same prefix reuses them;
// counts are differences, so earlier hits do not matter.
func newWriteCounter(prefix string) (*writeCounter, error) {
	dir := "/sys/kernel/tracing"
	if _, err := os.Stat(filepath.Join(dir, "kprobe_events")); err != nil {
		if err := run(context.Background(), "mount", "-t", "tracefs", "nodev", dir); err != nil {
			return nil, fmt.Errorf("mount tracefs to count IPVS writes: %w", err)
		}
	}
	// A kernel without optimized kprobes has no such file: nothing to turn off.
	if err := os.WriteFile(kprobeOptimization, []byte("0"), 0); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("turn off kprobe optimization (%s): %w", kprobeOptimization, err)
	}
	c := &writeCounter{dir: dir, prefix: prefix}
	for _, p := range probes {
		name := prefix + "_" + p.fn
		event := filepath.Join(dir, "events/kprobes", name)
		if _, err := os.Stat(event); err != nil {
			if err := c.appendFile("kprobe_events", fmt.Sprintf("p:%s %s\n", name, p.fn)); err != nil {
				return nil, fmt.Errorf("kprobe on %s: %w", p.fn, err)
			}
		}
		if err := os.WriteFile(filepath.Join(event, "enable"), []byte("1"), 0); err != nil {
			return nil, fmt.Errorf("enable the kprobe on %s: %w", p.fn, err)
		}
	}
	return c, nil
}

// kprobeOptimization switches jump-optimized kprobes on and off.
const kprobeOptimization = "/proc/sys/debug/kprobes-optimization"

// appendFile appends s to a tracefs file.
func (c *writeCounter) appendFile(name, s string) error {
	f, err := os.OpenFile(filepath.Join(c.dir, name), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, werr := f.WriteString(s)
	return errors.Join(werr, f.Close())
}

// read returns the counts so far.
func (c *writeCounter) read() (Writes, error) {
	b, err := os.ReadFile(filepath.Join(c.dir, "kprobe_profile"))
	if err != nil {
		return Writes{}, fmt.Errorf("read kprobe_profile: %w", err)
	}
	hits := map[string]int64{}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) >= 2 {
			hits[f[0]], _ = strconv.ParseInt(f[1], 10, 64)
		}
	}
	var w Writes
	for _, p := range probes {
		*p.field(&w) += hits[c.prefix+"_"+p.fn]
	}
	return w, nil
}
