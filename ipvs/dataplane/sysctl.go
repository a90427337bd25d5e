package dataplane

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// sysctlSetting is one IPVS sysctl and why it has its value.
type sysctlSetting struct {
	name     string
	value    int
	optional bool // absent in older kernels: skipped there
}

// flowSysctls is THE table of IPVS sysctls (/proc/sys/net/ipv4/vs/*) that
// directord sets, each deliberately. The situation they serve: routers spread
// flows over directors by ECMP and re-hash when a director joins or leaves, so
// a director receives mid-stream packets of flows it never saw. It must send
// them to the real server the previous director chose, without shared state:
// the same mh table (same destinations, weights and order, see Diff) plus
// these settings.
func flowSysctls() []sysctlSetting {
	return []sysctlSetting{
		// Create a connection entry from any TCP packet, not only a SYN. With
		// the default 0 a director drops the mid-stream packets of a flow that
		// ECMP moved to it; with 1 it schedules them, and mh picks the same real
		// server the other director picked.
		{name: "sloppy_tcp", value: 1},
		// The same for SCTP: accept a flow that did not start with INIT here.
		{name: "sloppy_sctp", value: 1},
		// Schedule ICMP errors (fragmentation needed, unreachable) that belong to
		// a flow this director has no entry for, instead of dropping them; mh
		// sends them to the real server of the flow, so path MTU discovery keeps
		// working for flows that moved between directors.
		{name: "schedule_icmp", value: 1},
		// 0: a packet for a connection whose destination was deleted is dropped,
		// not the connection expired. Apply restores the canonical destination
		// order by deleting and re-adding destinations; the kernel keeps a
		// deleted destination with its connections in its trash and gives it
		// back on re-add. With 1, the kernel (5.9+) queues a job on every delete
		// that expires all connections of unavailable destinations, which can
		// run between the delete and the re-add and reset healthy flows. Backends
		// that really leave are drained first (weight 0 until their connections
		// end or the drain delay passes).
		{name: "expire_nodest_conn", value: 0},
		// Bit 1: reschedule a SYN that reuses the ports of a finished connection
		// (TIME_WAIT/CLOSE); bit 2: also when the old entry is in FIN_WAIT, the
		// last state a DR director sees. A reused port then goes where mh sends
		// it now, which is where a director without the old entry sends it too;
		// otherwise the new flow follows the stale entry and breaks when ECMP
		// moves it.
		{name: "conn_reuse_mode", value: 3},
		// Expire a persistence template when its real server is quiesced
		// (weight 0), so persistent clients of a draining backend move on; a
		// director without the template would already schedule them elsewhere,
		// so this also keeps directors consistent.
		{name: "expire_quiescent_template", value: 1},
		// 0: no netfilter conntrack entries for IPVS connections. DR needs none,
		// entries made from mid-stream packets would be INVALID, and with
		// conntrack on a reused port can be dropped for a second (the "old
		// conntrack" path of conn_reuse_mode).
		{name: "conntrack", value: 0},
		// Answer oversized packets with ICMP fragmentation-needed (DR/TUN).
		{name: "pmtu_disc", value: 1},
		// Never drop connection entries or packets under memory pressure, and
		// keep the normal TCP state timeouts: each of these defenses drops or
		// shortens established flows.
		{name: "drop_entry", value: 0},
		{name: "drop_packet", value: 0},
		{name: "secure_tcp", value: 0},
		// Stay a director even if a sync daemon runs in backup mode.
		{name: "backup_only", value: 0},
		// Never route packets without a real server around IPVS to the local
		// stack: they would be answered with resets.
		{name: "cache_bypass", value: 0},
		// Keep the estimator running: it folds the per-CPU packet and byte
		// counters into the totals Stats reports (every 2 s). Older kernels
		// have no switch (always on), so it is skipped where it is missing.
		{name: "run_estimation", value: 1, optional: true},
	}
}

// SetSysctls writes the flow-continuity sysctls of the handle's network
// namespace, with overrides (name -> value) applied on top; an override may
// also name another sysctl under /proc/sys/net/ipv4/vs. It returns the values
// written and an error listing what could not be written.
func (h *Handle) SetSysctls(overrides map[string]int) (map[string]int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	want := make(map[string]int)
	optional := make(map[string]bool)
	for _, s := range flowSysctls() {
		want[s.name] = s.value
		optional[s.name] = s.optional
	}
	var errs []error
	for name, v := range overrides {
		if !validSysctlName(name) {
			errs = append(errs, fmt.Errorf("sysctl override %q: not a name under %s", name, h.cfg.sysctlDir))
			continue
		}
		want[name] = v
		h.extra[name] = true
	}
	written := make(map[string]int, len(want))
	err := inNetns(h.nsPath, func() error {
		for _, name := range slices.Sorted(maps.Keys(want)) {
			p := filepath.Join(h.cfg.sysctlDir, name)
			if err := writeExisting(p, strconv.Itoa(want[name])+"\n"); err != nil {
				if optional[name] && errors.Is(err, fs.ErrNotExist) && !h.extra[name] {
					h.log.Info("IPVS sysctl not in this kernel, skipped", "reason", name)
					continue
				}
				errs = append(errs, fmt.Errorf("set IPVS sysctl %s=%d: %w", name, want[name], err))
				continue
			}
			written[name] = want[name]
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return written, fmt.Errorf("IPVS sysctls: %w", err)
	}
	h.log.Info("IPVS sysctls set", "reason", "flow continuity behind ECMP", "count", len(written))
	return written, nil
}

// Sysctls reads back the sysctls SetSysctls manages (table and overrides)
// for status. Unreadable ones are left out and logged.
func (h *Handle) Sysctls() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	names := make(map[string]bool)
	for _, s := range flowSysctls() {
		names[s.name] = true
	}
	for n := range h.extra {
		names[n] = true
	}
	out := make(map[string]int, len(names))
	err := inNetns(h.nsPath, func() error {
		for _, name := range slices.Sorted(maps.Keys(names)) {
			b, err := os.ReadFile(filepath.Join(h.cfg.sysctlDir, name))
			if err != nil {
				h.log.Warn("read IPVS sysctl", "reason", name, "err", err)
				continue
			}
			v, err := strconv.Atoi(strings.TrimSpace(string(b)))
			if err != nil {
				h.log.Warn("parse IPVS sysctl", "reason", name, "err", err)
				continue
			}
			out[name] = v
		}
		return nil
	})
	if err != nil {
		h.log.Warn("read IPVS sysctls", "err", err)
	}
	return out
}

func validSysctlName(n string) bool {
	if n == "" {
		return false
	}
	for _, r := range n {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '_' {
			return false
		}
	}
	return true
}

// writeExisting writes an existing file without creating it, so a misspelt
// sysctl is an error rather than a stray file.
func writeExisting(path, content string) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(content); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
