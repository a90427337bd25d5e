//go:build linux && vm

package dataplane

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/ipvs"
)

// Connection synchronization against the real kernel: the daemons as the
// kernel runs them, adoption without a restart, and what a synchronized
// entry does for a flow that ECMP moves to another director.

// TestVMSyncDaemons starts both daemons through IPVS_CMD_NEW_DAEMON, reads
// them back with GET_DAEMON (cross-checked with ipvsadm), adopts them from a
// second handle without restarting them (the kernel threads keep their
// PIDs), repairs one stopped with ipvsadm, and stops them when the
// configuration drops them.
func TestVMSyncDaemons(t *testing.T) {
	ns := newNetns(t)
	ns.ip(t, "link", "add", "sync0", "type", "dummy")
	ns.ip(t, "addr", "add", "10.77.0.1/24", "dev", "sync0")
	ns.ip(t, "link", "set", "sync0", "up")
	var repairs []Repair
	h, _ := openCounted(t, ns, WithRepairHook(func(r Repair) { repairs = append(repairs, r) }))
	cfg := &ipvs.SyncConfig{Interface: "sync0", SyncID: 7, Group: netip.MustParseAddr("239.7.7.7"), Port: 9100, TTL: 2}
	want := ipvs.Settings{ManageSysctls: true, Sync: cfg}
	rep, err := h.Settings(context.Background(), want)
	if err != nil || rep.Sync.Error != "" {
		t.Fatalf("Settings: %v, sync %+v", err, rep.Sync)
	}
	master := ipvs.SyncDaemon{State: ipvs.SyncMaster, Interface: "sync0", SyncID: 7, MaxLen: 1472, Group: cfg.Group, Port: 9100, TTL: 2}
	backup := master
	backup.State = ipvs.SyncBackup
	if diff := cmp.Diff([]ipvs.SyncDaemon{master, backup}, rep.Sync.Daemons, netipComparers()...); diff != "" {
		t.Errorf("daemons read back (-want +got):\n%s", diff)
	}
	out := ns.exec(t, "ipvsadm", "-L", "--daemon")
	for _, s := range []string{"master sync daemon (mcast=sync0, syncid=7", "backup sync daemon (mcast=sync0, syncid=7", "group=239.7.7.7", "port=9100", "ttl=2"} {
		if !strings.Contains(out, s) {
			t.Errorf("ipvsadm -L --daemon lacks %q:\n%s", s, out)
		}
	}
	if got := strings.TrimSpace(ns.exec(t, "cat", "/proc/sys/net/ipv4/vs/sync_refresh_period")); got != "60" {
		t.Errorf("sync_refresh_period = %s, want 60 while sync is configured", got)
	}
	threads := syncThreads(t)
	if len(threads) < 2 {
		t.Fatalf("sync kernel threads: %v", threads)
	}

	// A restarted directord adopts: nothing restarts.
	h.Close()
	h2, _ := openCounted(t, ns, WithRepairHook(func(r Repair) { repairs = append(repairs, r) }))
	if rep, err := h2.Settings(context.Background(), want); err != nil || len(rep.Sync.Daemons) != 2 {
		t.Fatalf("adopting: %v, %+v", err, rep.Sync)
	}
	if after := syncThreads(t); !cmp.Equal(threads, after) {
		t.Errorf("adoption restarted the sync threads: %v before, %v after", threads, after)
	}

	// Stopped by hand: started again, reported as a repair.
	ns.exec(t, "ipvsadm", "--stop-daemon", "backup")
	if rep, err := h2.Settings(context.Background(), want); err != nil || len(rep.Sync.Daemons) != 2 {
		t.Fatalf("repairing: %v, %+v", err, rep.Sync)
	}
	if len(repairs) != 1 || repairs[0].Kind != RepairSyncDaemon || repairs[0].Subject != "backup" {
		t.Errorf("repairs %v, want the backup daemon", repairs)
	}

	// Dropped from the configuration: stopped.
	if rep, err := h2.Settings(context.Background(), ipvs.Settings{ManageSysctls: true}); err != nil || len(rep.Sync.Daemons) != 0 {
		t.Errorf("unconfigured: %v, %+v", err, rep.Sync)
	}
	if out := ns.exec(t, "ipvsadm", "-L", "--daemon"); strings.TrimSpace(out) != "" {
		t.Errorf("daemons left running:\n%s", out)
	}

	// A missing interface is an error that names it.
	rep, _ = h2.Settings(context.Background(), ipvs.Settings{Sync: &ipvs.SyncConfig{Interface: "nosuch0", SyncID: 7}})
	if !strings.Contains(rep.Sync.Error, `"nosuch0"`) {
		t.Errorf("sync on a missing interface: %q", rep.Sync.Error)
	}
}

// syncThreads lists the kernel's IPVS sync threads ("ipvs-m:GEN:ID") by
// PID.
func syncThreads(t *testing.T) map[string]string {
	t.Helper()
	out := map[string]string{}
	dirs, _ := filepath.Glob("/proc/[0-9]*/comm")
	for _, p := range dirs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if c := strings.TrimSpace(string(b)); strings.HasPrefix(c, "ipvs-m:") || strings.HasPrefix(c, "ipvs-b:") {
			out[filepath.Base(filepath.Dir(p))] = c
		}
	}
	return out
}

// syncLab is a client, two DR directors and three real servers on one
// bridge; the client reaches the VIP through director A or B as its route
// says, which is what an ECMP re-hash does to a flow.
//
//	client .2   A .11   B .12   rs1 .21  rs2 .22  rs3 .23    (10.88.0.0/24)
//	VIP 198.18.0.10 on lo of A, B and every real server
type syncLab struct {
	lan, client, a, b netns
	rs                [3]netns
}

const syncVIP = "198.18.0.10"

func newSyncLab(t *testing.T) *syncLab {
	t.Helper()
	l := &syncLab{lan: newNetns(t), client: newNetns(t), a: newNetns(t), b: newNetns(t)}
	l.lan.ip(t, "link", "add", "br0", "type", "bridge")
	l.lan.ip(t, "link", "set", "br0", "up")
	attach := func(ns netns, addr string) {
		port := "p" + strings.ReplaceAll(addr, ".", "")[4:]
		l.lan.ip(t, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns.name)
		l.lan.ip(t, "link", "set", port, "master", "br0")
		l.lan.ip(t, "link", "set", port, "up")
		ns.ip(t, "addr", "add", addr+"/24", "dev", "eth0")
		ns.ip(t, "link", "set", "eth0", "up")
	}
	attach(l.client, "10.88.0.2")
	attach(l.a, "10.88.0.11")
	attach(l.b, "10.88.0.12")
	for i := range l.rs {
		l.rs[i] = newNetns(t)
		attach(l.rs[i], fmt.Sprintf("10.88.0.2%d", i+1))
		l.rs[i].ip(t, "addr", "add", syncVIP+"/32", "dev", "lo")
		l.rs[i].sysctl(t, "net.ipv4.conf.all.arp_ignore", "1")
		l.rs[i].sysctl(t, "net.ipv4.conf.all.arp_announce", "2")
		name := fmt.Sprintf("rs%d", i+1)
		serveLines(t, l.rs[i], "0.0.0.0:80", func(net.Conn, string) string { return name })
	}
	for _, d := range []netns{l.a, l.b} {
		d.ip(t, "addr", "add", syncVIP+"/32", "dev", "lo")
	}
	l.client.ip(t, "route", "add", syncVIP+"/32", "via", "10.88.0.11")
	return l
}

// flow is one client connection and the real server it reached first.
type flow struct {
	c  net.Conn
	r  *bufio.Reader
	rs string
}

// ask sends a line and returns who answered, or "" when the connection is
// broken (reset, or no answer within 3 s).
func (f *flow) ask() string {
	f.c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := fmt.Fprintln(f.c, "ping"); err != nil {
		return ""
	}
	line, err := f.r.ReadString('\n')
	if err != nil {
		return ""
	}
	return strings.TrimSpace(line)
}

// open makes n connections to the VIP from the client and records who
// answered each.
func (l *syncLab) open(t *testing.T, n int) []*flow {
	t.Helper()
	var out []*flow
	for range n {
		var c net.Conn
		err := inNetns(l.client.path, func() error {
			var err error
			c, err = net.DialTimeout("tcp4", syncVIP+":80", 5*time.Second)
			return err
		})
		if err != nil {
			t.Fatalf("dial the VIP: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		f := &flow{c: c, r: bufio.NewReader(c)}
		if f.rs = f.ask(); f.rs == "" {
			t.Fatalf("a new connection got no answer")
		}
		out = append(out, f)
	}
	return out
}

// established counts director ns's connection entries for the VIP in state
// ESTABLISHED whose client port is one of flows', and returns their
// remaining timeouts' minimum (seconds).
func established(t *testing.T, ns netns, flows []*flow) (n, minExpire int) {
	t.Helper()
	ports := map[string]bool{}
	for _, f := range flows {
		ports[f.c.LocalAddr().String()] = true
	}
	minExpire = 1 << 30
	for _, line := range strings.Split(ns.exec(t, "ipvsadm", "-Lnc"), "\n") {
		// TCP  14:58  ESTABLISHED 10.88.0.2:40000 198.18.0.10:80 10.88.0.21:80
		f := strings.Fields(line)
		if len(f) != 6 || f[2] != "ESTABLISHED" || !ports[f[3]] {
			continue
		}
		n++
		var m, s int
		fmt.Sscanf(f[1], "%d:%d", &m, &s)
		minExpire = min(minExpire, m*60+s)
	}
	return n, minExpire
}

// TestVMSyncKeepsMovedFlows is what the sync daemon is for: flows that
// director A scheduled keep their real server when the route moves them to
// director B, whose own table would send them elsewhere (B drains rs2 and
// does not have rs3 at all: a real server drained or removed there). With
// synchronization B holds A's entries and forwards every flow to its real
// server; without it (the control) B schedules them itself and the flows of
// rs2 and rs3 break.
func TestVMSyncKeepsMovedFlows(t *testing.T) {
	l := newSyncLab(t)
	ha, _ := openCounted(t, l.a)
	hb, _ := openCounted(t, l.b)
	rs := func(i, w int) ipvs.Destination {
		return ipvs.Destination{Address: netip.MustParseAddr(fmt.Sprintf("10.88.0.2%d", i)), Port: 80, Weight: w, Forwarding: ipvs.DirectRoute}
	}
	key := ipvs.Key{VIP: netip.MustParseAddr(syncVIP), Port: 80, Protocol: 6}
	flags := []string{"mh-port", "mh-fallback"}
	applyOK(t, ha, []ipvs.Service{mhService(key, flags, rs(3, 1), rs(2, 1), rs(1, 1))})
	applyOK(t, hb, []ipvs.Service{mhService(key, flags, draining(rs(2, 1)), rs(1, 1))})
	sync := &ipvs.SyncConfig{Interface: "eth0", SyncID: 9}
	for _, h := range []*Handle{ha, hb} {
		if rep, err := h.Settings(context.Background(), ipvs.Settings{ManageSysctls: true, Sync: sync}); err != nil || rep.Sync.Error != "" {
			t.Fatalf("Settings: %v %s", err, rep.Sync.Error)
		}
	}

	moved := func(flows []*flow) (kept, broken int, on map[string]int) {
		on = map[string]int{}
		for _, f := range flows {
			on[f.rs]++
			switch got := f.ask(); got {
			case f.rs:
				kept++
			default:
				broken++
			}
		}
		return kept, broken, on
	}
	// With synchronization: wait until B holds every flow (the master
	// flushes its buffer within 2 s), then move them.
	opened := time.Now()
	synced := l.open(t, 48)
	deadline := time.Now().Add(20 * time.Second)
	for {
		n, expire := established(t, l.b, synced)
		if n == len(synced) {
			t.Logf("B held all %d flows %s after the first opened; kernel connection entry: %s", n,
				time.Since(opened).Round(100*time.Millisecond), connSlab(t))
			// The entry lives as long as the master's: 15 minutes when
			// established.
			if expire < 14*60 {
				t.Errorf("a synchronized entry expires in %d s, want the master's ESTABLISHED timeout (900 s)", expire)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B holds %d of %d flows 20 s after they opened", n, len(synced))
		}
		time.Sleep(200 * time.Millisecond)
	}
	// A synchronized entry needs no sloppy_tcp on the receiver: the moved
	// flows' mid-stream packets find their entry (docs/flow-sync.md, 5).
	l.b.sysctl(t, "net.ipv4.vs.sloppy_tcp", "0")
	l.client.ip(t, "route", "replace", syncVIP+"/32", "via", "10.88.0.12")
	kept, broken, on := moved(synced)
	t.Logf("with sync: %d flows on %v moved to B: %d kept their real server, %d broke", len(synced), on, kept, broken)
	if broken != 0 {
		t.Errorf("with sync %d of %d moved flows broke", broken, len(synced))
	}
	if on["rs2"] == 0 || on["rs3"] == 0 {
		t.Errorf("no flow reached rs2 or rs3 (%v): the test no longer shows draining and missing destinations", on)
	}

	// Control: the same without synchronization (and sloppy_tcp back, so
	// B schedules the moved flows rather than dropping them all).
	l.b.sysctl(t, "net.ipv4.vs.sloppy_tcp", "1")
	l.client.ip(t, "route", "replace", syncVIP+"/32", "via", "10.88.0.11")
	if _, err := ha.Settings(context.Background(), ipvs.Settings{ManageSysctls: true}); err != nil {
		t.Fatal(err)
	}
	unsynced := l.open(t, 48)
	if n, _ := established(t, l.b, unsynced); n != 0 {
		t.Fatalf("B holds %d flows with A's master stopped", n)
	}
	l.client.ip(t, "route", "replace", syncVIP+"/32", "via", "10.88.0.12")
	kept, broken, on = moved(unsynced)
	t.Logf("without sync: %d flows on %v moved to B: %d kept, %d broke", len(unsynced), on, kept, broken)
	if broken == 0 {
		t.Errorf("without sync no moved flow broke: the control shows nothing")
	}
}

// connSlab reads the size of one IPVS connection entry (the ip_vs_conn
// slab's object size, "320 bytes"), for the sizing in docs/flow-sync.md.
func connSlab(t *testing.T) string {
	b, err := os.ReadFile("/sys/kernel/slab/ip_vs_conn/object_size")
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	return strings.TrimSpace(string(b)) + " bytes"
}
