package main

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fakeVIPs is a stateful stand-in for the kernel's VIP bindings: Set
// replaces the owned set, as kernel.VIPs does.
type fakeVIPs struct{ bound *[]netip.Addr }

func (f fakeVIPs) Set(_ context.Context, vips []netip.Addr) error {
	*f.bound = slices.Clone(vips)
	return nil
}
func (f fakeVIPs) Owned(context.Context) ([]netip.Addr, error) { return slices.Clone(*f.bound), nil }
func (f fakeVIPs) Close() error                                { return nil }

// realServerHarness runs realserver commands against a fake kernel, a
// temporary sysctl tree (arp_ignore=0, arp_announce=1) and state directory.
type realServerHarness struct {
	t     *testing.T
	bound []netip.Addr
	proc  string
	state string
}

func newRealServerHarness(t *testing.T) *realServerHarness {
	h := &realServerHarness{t: t, proc: t.TempDir(), state: filepath.Join(t.TempDir(), "state")}
	dir := filepath.Join(h.proc, "net/ipv4/conf/all")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	h.writeSysctls("0", "1")
	return h
}

func (h *realServerHarness) writeSysctls(ignore, announce string) {
	dir := filepath.Join(h.proc, "net/ipv4/conf/all")
	os.WriteFile(filepath.Join(dir, "arp_ignore"), []byte(ignore+"\n"), 0o644)
	os.WriteFile(filepath.Join(dir, "arp_announce"), []byte(announce+"\n"), 0o644)
}

func (h *realServerHarness) sysctls() string {
	dir := filepath.Join(h.proc, "net/ipv4/conf/all")
	a, _ := os.ReadFile(filepath.Join(dir, "arp_ignore"))
	b, _ := os.ReadFile(filepath.Join(dir, "arp_announce"))
	return strings.TrimSpace(string(a)) + " " + strings.TrimSpace(string(b))
}

// run executes `directord realserver args... -state-dir STATE`.
func (h *realServerHarness) run(args ...string) (string, string, int) {
	var out, errb bytes.Buffer
	rs := &realServerCmd{stdout: &out, stderr: &errb, proc: h.proc,
		open: func(*realServerRecord) (vipSetter, error) { return fakeVIPs{&h.bound}, nil }}
	code := rs.run(append(args, "-state-dir", h.state))
	return out.String(), errb.String(), code
}

func (h *realServerHarness) mustRun(want string, args ...string) {
	h.t.Helper()
	out, errOut, code := h.run(args...)
	if code != exitOK || !strings.Contains(out, want) {
		h.t.Fatalf("realserver %v: exit %d, stdout %q (want %q), stderr %q", args, code, out, want, errOut)
	}
}

func (h *realServerHarness) wantBound(vips ...string) {
	h.t.Helper()
	var want []netip.Addr
	for _, v := range vips {
		want = append(want, netip.MustParseAddr(v))
	}
	if diff := cmp.Diff(want, h.bound, cmpopts.EquateEmpty(), cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		h.t.Errorf("bound VIPs (-want +got):\n%s", diff)
	}
}

// TestRealServerOneVIPAtATime: add and remove change one VIP and keep the
// others (a second VIP used to unbind the first), both are idempotent, the
// record survives a "reboot" (apply binds everything again), and the ARP
// sysctls are restored to their original values after the last VIP.
func TestRealServerOneVIPAtATime(t *testing.T) {
	h := newRealServerHarness(t)
	h.mustRun("bound 198.18.0.10 on lo", "add", "198.18.0.10")
	h.wantBound("198.18.0.10")
	if got := h.sysctls(); got != "1 2" {
		t.Errorf("sysctls after add = %s, want 1 2", got)
	}
	h.mustRun("already bound", "add", "198.18.0.10")
	h.mustRun("bound 198.18.0.11", "add", "198.18.0.11")
	h.wantBound("198.18.0.10", "198.18.0.11")
	h.mustRun("198.18.0.11  bound", "list")

	h.bound = nil // a reboot: the kernel forgot, the record did not
	h.mustRun("198.18.0.10  NOT bound", "list")
	h.mustRun("bound 2 VIP(s)", "apply")
	h.wantBound("198.18.0.10", "198.18.0.11")

	h.mustRun("unbound 198.18.0.10", "remove", "198.18.0.10")
	h.wantBound("198.18.0.11")
	h.mustRun("was not bound", "remove", "198.18.0.10")
	if got := h.sysctls(); got != "1 2" {
		t.Errorf("sysctls with a VIP left = %s, want 1 2", got)
	}
	h.mustRun("restored arp_ignore and arp_announce", "remove", "198.18.0.11")
	h.wantBound()
	if got := h.sysctls(); got != "0 1" {
		t.Errorf("sysctls after the last remove = %s, want the originals 0 1", got)
	}
	if _, err := os.Stat(filepath.Join(h.state, realServerFile)); !os.IsNotExist(err) {
		t.Errorf("the record outlived the last VIP: %v", err)
	}
	h.mustRun("nothing to do", "apply")
	h.mustRun("no VIPs recorded", "list")
}

// TestRealServerKeepsOriginalSysctls: the values restored at the end are the
// ones from before the first add, not the ones it set itself.
func TestRealServerKeepsOriginalSysctls(t *testing.T) {
	h := newRealServerHarness(t)
	h.mustRun("bound", "add", "198.18.0.10")
	h.mustRun("bound", "add", "198.18.0.11") // sysctls are 1 2 now
	h.mustRun("unbound", "remove", "198.18.0.10")
	h.mustRun("restored", "remove", "198.18.0.11")
	if got := h.sysctls(); got != "0 1" {
		t.Errorf("sysctls = %s, want the originals 0 1", got)
	}
}

func TestRealServerUsage(t *testing.T) {
	h := newRealServerHarness(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-vip", "198.18.0.10"}, "-vip is gone"},
		{[]string{"add"}, "add needs a VIP"},
		{[]string{"add", "198.18.0.10", "198.18.0.11"}, "one VIP at a time"},
		{[]string{"add", "198.18.0.300"}, "is not an IP address"},
		{[]string{"list", "x"}, "takes no arguments"},
		{[]string{"bind", "198.18.0.10"}, `unknown command "bind"`},
		{[]string{"add", "198.18.0.10", "-proc", "/tmp"}, "flag provided but not defined: -proc"},
	} {
		_, errOut, code := h.run(tc.args...)
		if code != exitUsage || !strings.Contains(errOut, tc.want) {
			t.Errorf("realserver %v: exit %d, stderr %q; want exit %d and %q", tc.args, code, errOut, exitUsage, tc.want)
		}
	}
	if strings.Contains(realServerUsage, "test") || strings.Contains(realServerUsage, "-proc") {
		t.Errorf("the help mentions test-only flags:\n%s", realServerUsage)
	}
	h.mustRun("bound", "add", "198.18.0.10", "-interface", "lo")
	if _, errOut, code := h.run("add", "198.18.0.11", "-interface", "dummy0"); code != exitFail || !strings.Contains(errOut, "remove them first") {
		t.Errorf("adding on another interface: exit %d, %q", code, errOut)
	}
}
