package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/internal/atomicfile"
	"github.com/anycast-director/director/routing/kernel"
)

// realServerFile is the record's name in the state directory.
const realServerFile = "realserver.json"

// realServerFormat is the record's format version.
const realServerFormat = 1

// realServerRecord is what `directord realserver` keeps in the state
// directory: the VIPs to bind at boot, how, and the sysctl values found
// before the first VIP, restored after the last one is removed.
type realServerRecord struct {
	Format    int               `json:"format"`
	Interface string            `json:"interface"`
	Binding   string            `json:"binding"`
	VIPs      []netip.Addr      `json:"vips"`
	Previous  map[string]string `json:"previous_sysctls"`
}

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

func (rs *realServerCmd) recordPath() string { return filepath.Join(rs.stateDir, realServerFile) }

// load reads the record; nil without error when there is none.
func (rs *realServerCmd) load() (*realServerRecord, error) {
	data, err := os.ReadFile(rs.recordPath())
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the record: %w", err)
	}
	var rec realServerRecord
	if err := json.Unmarshal(data, &rec); err != nil {
		return nil, fmt.Errorf("%s is corrupt (%v): check the VIPs on lo and the ARP sysctls by hand, then delete it", rs.recordPath(), err)
	}
	if rec.Format != realServerFormat {
		return nil, fmt.Errorf("%s has format %d, this directord knows %d: use the directord that wrote it", rs.recordPath(), rec.Format, realServerFormat)
	}
	return &rec, nil
}

// loadOrCreate returns the record, or a new one that remembers the current
// sysctl values. The interface and binding are fixed by the first VIP.
func (rs *realServerCmd) loadOrCreate(iface, binding string) (*realServerRecord, error) {
	rec, err := rs.load()
	if err != nil {
		return nil, err
	}
	if rec != nil {
		if iface != "" && iface != rec.Interface {
			return nil, fmt.Errorf("the recorded VIPs are on %s, not %s: remove them first to change the interface", rec.Interface, iface)
		}
		if binding != "auto" && binding != rec.Binding {
			return nil, fmt.Errorf("the recorded VIPs use the %s binding, not %s: remove them first to change it", rec.Binding, binding)
		}
		return rec, nil
	}
	rec = &realServerRecord{Format: realServerFormat, Interface: iface, Previous: map[string]string{}}
	if rec.Interface == "" {
		rec.Interface = config.DefaultVIPInterface
	}
	want, ok := map[string]config.VIPBinding{"auto": config.BindingAuto, "address": config.BindingAddress,
		"local-route": config.BindingLocalRoute}[binding]
	if !ok {
		return nil, fmt.Errorf("-binding %q: use auto, address or local-route", binding)
	}
	b, _ := vipBinding(want, config.AnnounceNone, kernel.Release())
	rec.Binding = b.String()
	for _, s := range arpSysctls() {
		old, err := os.ReadFile(filepath.Join(rs.proc, s.name))
		if err != nil {
			return nil, fmt.Errorf("read sysctl %s: %w", s.name, err)
		}
		rec.Previous[s.name] = strings.TrimSpace(string(old))
	}
	return rec, nil
}

// setSysctls writes the ARP sysctls.
func (rs *realServerCmd) setSysctls() error {
	for _, s := range arpSysctls() {
		if err := os.WriteFile(filepath.Join(rs.proc, s.name), []byte(s.value), 0o644); err != nil {
			return fmt.Errorf("set sysctl %s=%s: %w (needs root or CAP_NET_ADMIN)", s.name, s.value, err)
		}
	}
	return nil
}

// restoreSysctls writes back the values found before the first VIP.
func (rs *realServerCmd) restoreSysctls(rec *realServerRecord) error {
	for name, val := range rec.Previous {
		if _, err := strconv.Atoi(val); err != nil {
			return fmt.Errorf("%s: bad value %q for %s", rs.recordPath(), val, name)
		}
		if err := os.WriteFile(filepath.Join(rs.proc, name), []byte(val), 0o644); err != nil {
			return fmt.Errorf("restore sysctl %s=%s: %w", name, val, err)
		}
	}
	return nil
}

// currentSysctls renders the ARP sysctls as they are now.
func (rs *realServerCmd) currentSysctls() string {
	var parts []string
	for _, s := range arpSysctls() {
		v, err := os.ReadFile(filepath.Join(rs.proc, s.name))
		val := strings.TrimSpace(string(v))
		if err != nil {
			val = "unreadable"
		}
		parts = append(parts, filepath.Base(s.name)+"="+val)
	}
	return strings.Join(parts, " ")
}

// writeRecord replaces the record atomically (internal/atomicfile), so a
// crash leaves the old or the new record.
func writeRecord(path string, rec *realServerRecord) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create the state directory: %w", err)
	}
	data, err := json.MarshalIndent(rec, "", "  ")
	if err != nil {
		return err
	}
	if err := atomicfile.Write(path, append(data, '\n'), 0o644); err != nil {
		return fmt.Errorf("write the record: %w", err)
	}
	return nil
}

// removeRecord deletes the record and makes the deletion durable.
func removeRecord(path string) error {
	if err := atomicfile.Remove(path); err != nil {
		return fmt.Errorf("remove the record: %w", err)
	}
	return nil
}
