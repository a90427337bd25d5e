package dataplane

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/ipvs"
)

// fakeSync is a stateful stand-in for the kernel's sync daemons: one per
// state, started with the kernel's defaults filled in, EEXIST for a second
// one of a state, ESRCH for stopping one that does not run.
type fakeSync struct {
	run    map[ipvs.SyncState]ipvs.SyncDaemon
	mtus   map[string]int
	starts int
	stops  int
}

func newFakeSync() *fakeSync {
	return &fakeSync{run: map[ipvs.SyncState]ipvs.SyncDaemon{}, mtus: map[string]int{"eth1": 1500}}
}

func (f *fakeSync) daemons() ([]ipvs.SyncDaemon, error) {
	var out []ipvs.SyncDaemon
	for _, s := range []ipvs.SyncState{ipvs.SyncMaster, ipvs.SyncBackup} {
		if d, ok := f.run[s]; ok {
			out = append(out, d)
		}
	}
	return out, nil
}

func (f *fakeSync) start(d ipvs.SyncDaemon) error {
	mtu, ok := f.mtus[d.Interface]
	if !ok {
		return syscall.ENODEV
	}
	if _, ok := f.run[d.State]; ok {
		return syscall.EEXIST
	}
	f.starts++
	f.run[d.State] = d.Normalized(mtu)
	return nil
}

func (f *fakeSync) stop(s ipvs.SyncState) error {
	if _, ok := f.run[s]; !ok {
		return syscall.ESRCH
	}
	f.stops++
	delete(f.run, s)
	return nil
}

func (f *fakeSync) mtu(ifname string) (int, error) {
	if m, ok := f.mtus[ifname]; ok {
		return m, nil
	}
	return 0, fmt.Errorf("route ip+net: no such network interface")
}

func (f *fakeSync) close() error { return nil }

// settingsHandle is a handle on the fake kernels, with a sysctl folder
// holding every sysctl of the flow and sync tables and the repairs it
// reports.
func settingsHandle(t *testing.T) (*Handle, *fakeSync, string, *[]Repair) {
	t.Helper()
	dir := t.TempDir()
	for _, s := range append(flowSysctls(), syncSysctls()...) {
		if s.name == "run_estimation" {
			continue // optional: older kernels lack it, which is no error
		}
		text := "7\n"
		if s.vector {
			text = "3\t50\n"
		}
		if err := os.WriteFile(filepath.Join(dir, s.name), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	fs := newFakeSync()
	var repairs []Repair
	cfg := testConfig()
	cfg.sysctlDir = dir
	cfg.newSync = func(string) (syncKernel, error) { return fs, nil }
	cfg.onRepair = func(r Repair) { repairs = append(repairs, r) }
	return newHandle(newFakeKernel(t), "", discard(), cfg), fs, dir, &repairs
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestSettingsSysctls(t *testing.T) {
	h, _, dir, repairs := settingsHandle(t)
	ctx := context.Background()
	want := ipvs.Settings{ManageSysctls: true, Sysctls: map[string]int{"expire_nodest_conn": 1}}
	rep, err := h.Settings(ctx, want)
	if err != nil {
		t.Fatal(err)
	}
	exp := map[string]int{}
	for _, s := range flowSysctls() {
		exp[s.name] = s.value
	}
	delete(exp, "run_estimation")
	exp["expire_nodest_conn"] = 1
	if diff := cmp.Diff(exp, rep.Sysctls); diff != "" {
		t.Errorf("read back (-want +got):\n%s", diff)
	}
	if exp["sloppy_tcp"] != 1 || exp["conntrack"] != 0 {
		t.Errorf("the table must enable sloppy_tcp and disable conntrack: %v", exp)
	}
	if got := readFile(t, filepath.Join(dir, "sync_refresh_period")); got != "7" {
		t.Errorf("sync_refresh_period = %s without sync configured, want it left alone (7)", got)
	}
	if len(*repairs) != 0 {
		t.Errorf("first settings reported repairs: %v", *repairs)
	}

	// Someone resets sloppy_tcp: the next call sets it back and says so.
	if err := os.WriteFile(filepath.Join(dir, "sloppy_tcp"), []byte("0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := h.Settings(ctx, want); err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "sloppy_tcp")); got != "1" {
		t.Errorf("sloppy_tcp = %s after the repair, want 1", got)
	}
	if diff := cmp.Diff([]Repair{{Kind: RepairSysctl, Subject: "sloppy_tcp", Detail: "sloppy_tcp was 0, set to 1"}}, *repairs); diff != "" {
		t.Errorf("repairs (-want +got):\n%s", diff)
	}

	// A value that matches is not written: a read-only file proves it.
	if err := os.Chmod(filepath.Join(dir, "conntrack"), 0o444); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 { // root writes read-only files anyway
		if _, err := h.Settings(ctx, want); err != nil {
			t.Errorf("settings with nothing to change wrote a sysctl: %v", err)
		}
	}

	if _, err := h.Settings(ctx, ipvs.Settings{ManageSysctls: true, Sysctls: map[string]int{"../../ip_forward": 1, "no_such_sysctl": 1}}); err == nil ||
		!strings.Contains(err.Error(), "../../ip_forward") || !strings.Contains(err.Error(), "no_such_sysctl") {
		t.Errorf("bad overrides: %v", err)
	}
}

func TestSettingsLeaveSysctlsAlone(t *testing.T) {
	h, _, dir, _ := settingsHandle(t)
	rep, err := h.Settings(context.Background(), ipvs.Settings{ManageSysctls: false})
	if err != nil {
		t.Fatal(err)
	}
	if got := readFile(t, filepath.Join(dir, "sloppy_tcp")); got != "7" {
		t.Errorf("sloppy_tcp = %s with manage_sysctls false, want it untouched (7)", got)
	}
	if rep.Sysctls["sloppy_tcp"] != 7 {
		t.Errorf("status shows %v, want the kernel's values", rep.Sysctls)
	}
}

func TestSettingsSyncSysctls(t *testing.T) {
	h, _, dir, _ := settingsHandle(t)
	sync := &ipvs.SyncConfig{Interface: "eth1", SyncID: 7}
	rep, err := h.Settings(context.Background(), ipvs.Settings{ManageSysctls: true, Sync: sync,
		Sysctls: map[string]int{"sync_refresh_period": 120}})
	if err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string]string{"sync_threshold": "3 0", "sync_refresh_period": "120", "sync_retries": "1", "sync_version": "1"} {
		if got := readFile(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s = %q, want %q", name, got, want)
		}
	}
	if rep.Sysctls["sync_threshold"] != 3 || rep.Sysctls["sync_period"] != 0 {
		t.Errorf("status shows sync_threshold %d sync_period %d, want 3 and 0", rep.Sysctls["sync_threshold"], rep.Sysctls["sync_period"])
	}
}

func TestSettingsSyncDaemons(t *testing.T) {
	h, fs, _, repairs := settingsHandle(t)
	ctx := context.Background()
	cfg := &ipvs.SyncConfig{Interface: "eth1", SyncID: 7}
	keep := func(c *ipvs.SyncConfig) ipvs.SyncStatus {
		t.Helper()
		rep, err := h.Settings(ctx, ipvs.Settings{Sync: c})
		if err != nil {
			t.Fatal(err)
		}
		return rep.Sync
	}
	st := keep(cfg)
	master := ipvs.SyncDaemon{State: ipvs.SyncMaster, Interface: "eth1", SyncID: 7, MaxLen: 1472, Group: ipvs.DefaultSyncGroup, Port: 8848, TTL: 1}
	backup := master
	backup.State = ipvs.SyncBackup
	if diff := cmp.Diff(ipvs.SyncStatus{Configured: true, Daemons: []ipvs.SyncDaemon{master, backup}}, st, netipComparers()...); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}
	if fs.starts != 2 {
		t.Errorf("%d starts, want master and backup", fs.starts)
	}

	// Running as configured: nothing is touched.
	keep(cfg)
	if fs.starts != 2 || fs.stops != 0 {
		t.Errorf("a second call with the same settings started %d and stopped %d daemons", fs.starts-2, fs.stops)
	}

	// Stopped behind its back: started again and reported.
	delete(fs.run, ipvs.SyncBackup)
	keep(cfg)
	if _, ok := fs.run[ipvs.SyncBackup]; !ok || len(*repairs) != 1 || (*repairs)[0].Kind != RepairSyncDaemon {
		t.Errorf("backup stopped by hand: running %v, repairs %v", fs.run, *repairs)
	}

	// New settings: both restarted, not a repair.
	cfg2 := &ipvs.SyncConfig{Interface: "eth1", SyncID: 8, Port: 9000}
	keep(cfg2)
	if fs.run[ipvs.SyncMaster].SyncID != 8 || fs.run[ipvs.SyncBackup].Port != 9000 || len(*repairs) != 1 {
		t.Errorf("after a settings change: running %v, repairs %v", fs.run, *repairs)
	}

	// No longer configured: the daemons it kept stop.
	if st := keep(nil); len(st.Daemons) != 0 || st.Configured {
		t.Errorf("sync removed from the configuration: status %+v", st)
	}

	// Someone else's daemon, never configured here, stays.
	fs.run[ipvs.SyncBackup] = backup
	if st := keep(nil); len(st.Daemons) != 1 {
		t.Errorf("a daemon this handle never kept was stopped: status %+v", st)
	}
}

func TestSettingsSyncAdoptsOnRestart(t *testing.T) {
	h, fs, _, repairs := settingsHandle(t)
	cfg := &ipvs.SyncConfig{Interface: "eth1", SyncID: 7, Group: netip.MustParseAddr("239.1.1.1")}
	for _, d := range cfg.Daemons() {
		if err := fs.start(d); err != nil {
			t.Fatal(err)
		}
	}
	fs.starts = 0
	if _, err := h.Settings(context.Background(), ipvs.Settings{Sync: cfg}); err != nil {
		t.Fatal(err)
	}
	if fs.starts != 0 || fs.stops != 0 || len(*repairs) != 0 {
		t.Errorf("a restarted daemon found sync running as configured and started %d, stopped %d, repaired %v", fs.starts, fs.stops, *repairs)
	}
	// What it adopted it keeps: stopped behind its back, it is a repair.
	delete(fs.run, ipvs.SyncMaster)
	if _, err := h.Settings(context.Background(), ipvs.Settings{Sync: cfg}); err != nil {
		t.Fatal(err)
	}
	if len(*repairs) != 1 || (*repairs)[0].Subject != "master" {
		t.Errorf("adopted master stopped by hand: repairs %v", *repairs)
	}
}

func TestSettingsSyncErrors(t *testing.T) {
	h, _, _, _ := settingsHandle(t)
	rep, err := h.Settings(context.Background(), ipvs.Settings{Sync: &ipvs.SyncConfig{Interface: "eth9", SyncID: 7}})
	if err != nil {
		t.Errorf("a sync failure is in the status, not the error: %v", err)
	}
	if !strings.Contains(rep.Sync.Error, `interface "eth9"`) || !strings.Contains(rep.Sync.Error, "ipvs.sync.interface") {
		t.Errorf("error %q does not name the interface and the setting", rep.Sync.Error)
	}
}

func TestDaemonEncoding(t *testing.T) {
	for _, d := range []ipvs.SyncDaemon{
		{State: ipvs.SyncMaster, Interface: "eth1", SyncID: 7, MaxLen: 1400, Group: netip.MustParseAddr("239.0.0.9"), Port: 9000, TTL: 2},
		{State: ipvs.SyncBackup, Interface: "bond0.100", SyncID: 255, Group: netip.MustParseAddr("ff02::81")},
		{State: ipvs.SyncMaster, Interface: "eth0"},
	} {
		// The kernel answers a dump with IPVS_CMD_ATTR_DAEMON as sent.
		got := decodeDaemons([][]byte{encodeDaemon(d)})
		if diff := cmp.Diff([]ipvs.SyncDaemon{d}, got, netipComparers()...); diff != "" {
			t.Errorf("round trip of %s (-want +got):\n%s", d, diff)
		}
	}
}

func TestNormalized(t *testing.T) {
	m := ipvs.SyncDaemon{State: ipvs.SyncMaster, Interface: "eth1"}
	b := ipvs.SyncDaemon{State: ipvs.SyncBackup, Interface: "eth1"}
	for _, c := range []struct {
		d    ipvs.SyncDaemon
		mtu  int
		want uint16
	}{
		{m, 9000, 1472}, // a master assumes 1500
		{b, 9000, 8972}, // a backup follows the MTU
		{b, 1400, 1472}, // but at least 1500
		{ipvs.SyncDaemon{State: ipvs.SyncBackup, MaxLen: 100}, 1500, 1024},
		{ipvs.SyncDaemon{State: ipvs.SyncMaster, Group: netip.MustParseAddr("ff02::81")}, 1500, 1452},
	} {
		got := c.d.Normalized(c.mtu)
		if got.MaxLen != c.want || got.Port != 8848 || got.TTL != 1 || !got.Group.IsValid() {
			t.Errorf("%s with MTU %d normalizes to %s, want maxlen %d", c.d, c.mtu, got, c.want)
		}
	}
}
