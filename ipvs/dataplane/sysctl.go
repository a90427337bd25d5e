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

	"github.com/anycast-director/director/ipvs"
)

// sysctlSetting is one IPVS sysctl and why it has its value.
type sysctlSetting struct {
	name     string
	value    int
	period   int  // second value of a vector (sync_threshold's sync_period)
	vector   bool // the sysctl holds two values: value and period
	optional bool // absent in older kernels: skipped there
}

// text is how the setting is written and read back.
func (s sysctlSetting) text() string {
	if s.vector {
		return fmt.Sprintf("%d %d", s.value, s.period)
	}
	return strconv.Itoa(s.value)
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
		// Stay a director even while the sync daemon runs in backup mode: every
		// director forwards and receives the others' connections at once.
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

// syncSysctls are set on top of flowSysctls while connection synchronization
// is configured. They decide when a master sends a connection (see
// ip_vs_sync_conn_needed in the kernel and docs/flow-sync.md): at once when
// it becomes established and at every later state change, then again at
// most once per refresh period while it carries packets, so a backup's entry
// (which expires with the master's timeout, 15 minutes when established)
// never runs out while the flow lives. Sync traffic then grows with new
// connections per second and active connections over the refresh period,
// not with packets.
func syncSysctls() []sysctlSetting {
	return []sysctlSetting{
		// Version 1 messages carry the connection's timeout, IPv6 and
		// persistence data; version 0 ones carry none of them.
		{name: "sync_version", value: 1},
		// sync_period 0: no syncs every N packets (the kernel's default of
		// 50 makes a busy flow send many); the threshold only seeds a
		// received entry's packet count.
		{name: "sync_threshold", value: 3, period: 0, vector: true},
		// Send an active connection again after 60 s at the earliest.
		{name: "sync_refresh_period", value: 60},
		// And once more 7.5 s (refresh/8) after its first sync, in case the
		// multicast datagram was lost.
		{name: "sync_retries", value: 1},
	}
}

// vectorNames names the values of the vector sysctls in status.
var vectorNames = map[string][2]string{"sync_threshold": {"sync_threshold", "sync_period"}}

// desiredSysctls is every sysctl Settings keeps for s, by name: the flow
// table, the sync table while s.Sync is set, and s.Sysctls on top (an
// override may name any sysctl under net.ipv4.vs).
func desiredSysctls(s ipvs.Settings) (map[string]sysctlSetting, []error) {
	want := make(map[string]sysctlSetting)
	table := flowSysctls()
	if s.Sync != nil {
		table = append(table, syncSysctls()...)
	}
	for _, st := range table {
		want[st.name] = st
	}
	var errs []error
	for name, v := range s.Sysctls {
		if !validSysctlName(name) {
			errs = append(errs, fmt.Errorf("sysctl override %q: not a name under net.ipv4.vs", name))
			continue
		}
		st := want[name]
		st.name, st.value, st.optional = name, v, false
		want[name] = st // a vector keeps its other value
	}
	return want, errs
}

// keepSysctls makes the namespace's sysctls what s asks for. It reads each
// one first and writes only those that differ; a value that differs from
// what this handle set before was changed behind its back, and restoring it
// is logged and reported as a repair. With s.ManageSysctls false nothing is
// written (and those it kept are only read). It returns the sysctls as read
// back, for status.
func (h *Handle) keepSysctls(s ipvs.Settings) (map[string]int, error) {
	want, errs := desiredSysctls(s)
	if !s.ManageSysctls {
		// Read only: the flow table and whatever this handle keeps.
		want, errs = make(map[string]sysctlSetting), nil
		for _, st := range flowSysctls() {
			want[st.name] = st
		}
		for name := range h.kept {
			if _, ok := want[name]; !ok {
				want[name] = sysctlSetting{name: name}
			}
		}
	}
	read := make(map[string]int, len(want))
	err := inNetns(h.nsPath, func() error {
		for _, name := range slices.Sorted(maps.Keys(want)) {
			st := want[name]
			cur, err := h.readSysctl(name)
			switch {
			case err != nil && st.optional && errors.Is(err, fs.ErrNotExist):
				continue
			case err != nil:
				errs = append(errs, fmt.Errorf("read IPVS sysctl %s: %w", name, err))
				continue
			case s.ManageSysctls && !sameSysctl(cur, st.text()):
				if err := h.writeSysctl(st, cur); err != nil {
					errs = append(errs, err)
					continue
				}
				cur = st.text()
			}
			if s.ManageSysctls {
				h.kept[name] = st.text()
			}
			addSysctlValues(read, name, cur)
		}
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return read, fmt.Errorf("IPVS sysctls: %w", err)
	}
	return read, nil
}

// readSysctl reads one sysctl's text, trimmed.
func (h *Handle) readSysctl(name string) (string, error) {
	b, err := os.ReadFile(filepath.Join(h.cfg.sysctlDir, name))
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// writeSysctl sets st (cur is its value before) and says so: as a repair
// when this handle had set it to the same value before.
func (h *Handle) writeSysctl(st sysctlSetting, cur string) error {
	p := filepath.Join(h.cfg.sysctlDir, st.name)
	if err := writeExisting(p, st.text()+"\n"); err != nil {
		return fmt.Errorf("set IPVS sysctl %s=%s: %w", st.name, st.text(), err)
	}
	detail := fmt.Sprintf("%s was %s, set to %s", st.name, cur, st.text())
	if prev, ok := h.kept[st.name]; ok && prev == st.text() {
		h.repaired(Repair{Kind: RepairSysctl, Subject: st.name, Detail: detail})
		return nil
	}
	h.log.Info("IPVS sysctl set", "reason", detail)
	return nil
}

// sameSysctl compares a sysctl's text with a wanted value field by field
// (the kernel separates a vector's values with a tab).
func sameSysctl(have, want string) bool {
	return slices.Equal(strings.Fields(have), strings.Fields(want))
}

// addSysctlValues records a sysctl read back for status; a vector gives one
// entry per value.
func addSysctlValues(out map[string]int, name, text string) {
	f := strings.Fields(text)
	names, vector := vectorNames[name]
	for i, v := range f {
		n, err := strconv.Atoi(v)
		if err != nil {
			return
		}
		switch {
		case !vector && i == 0:
			out[name] = n
		case vector && i < len(names):
			out[names[i]] = n
		}
	}
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
