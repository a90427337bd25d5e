//go:build linux && privileged

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/anycast-director/director/lab/netlab"
)

// TestPrivilegedRealServer drives `directord realserver` against the real
// kernel in a namespace, with each binding: one VIP at a time, idempotent,
// someone else's address on lo untouched, `apply` restores what a "reboot"
// (an operator flushing lo and resetting the sysctls) lost, and the last
// remove restores the original sysctls. The local-route binding is the
// fallback for kernels before 6.1, forced here.
func TestPrivilegedRealServer(t *testing.T) {
	lab := netlab.New(t)
	bin := filepath.Join(lab.Dir(), "directord")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, binding := range []string{"address", "local-route"} {
		t.Run(binding, func(t *testing.T) { realServerScenario(t, lab, bin, binding) })
	}
}

func realServerScenario(t *testing.T, lab *netlab.Lab, bin, binding string) {
	ns := lab.Namespace("rs-" + binding[:5])
	state := filepath.Join(lab.Dir(), "state-"+binding)
	ns.Sysctl("net.ipv4.conf.all.arp_ignore", "0")
	ns.Sysctl("net.ipv4.conf.all.arp_announce", "1")
	ns.MustRun("ip", "addr", "add", "10.9.9.9/32", "dev", "lo") // not ours
	rs := func(args ...string) string {
		t.Helper()
		out, err := ns.Run(append([]string{bin, "realserver"}, append(args, "-state-dir", state)...)...)
		if err != nil {
			t.Fatalf("realserver %v: %v", args, err)
		}
		return out
	}
	// local reports which VIPs the kernel delivers locally, whatever the
	// binding: `ip route get` says "local" for them.
	local := func(vips ...string) []string {
		var out []string
		for _, v := range vips {
			// Not local: "unreachable" here (the namespace has no routes).
			if r, err := ns.Run("ip", "route", "get", v); err == nil && strings.HasPrefix(r, "local ") {
				out = append(out, v)
			}
		}
		return out
	}
	sysctls := func() string {
		return strings.Join(strings.Fields(ns.MustRun("sysctl", "-n", "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce")), " ")
	}
	const a, b = "198.18.77.10", "198.18.77.11"

	rs("add", a, "-binding", binding)
	rs("add", b)
	rs("add", a) // idempotent
	if got := local(a, b); len(got) != 2 {
		t.Errorf("local VIPs after two adds = %v, want both", got)
	}
	if got := sysctls(); got != "1 2" {
		t.Errorf("sysctls = %s, want 1 2", got)
	}
	onLo := ns.MustRun("ip", "-o", "addr", "show", "dev", "lo")
	if bound := strings.Contains(onLo, a+"/32"); bound != (binding == "address") {
		t.Errorf("%s binding: VIP address on lo = %v:\n%s", binding, bound, onLo)
	}
	if list := rs("list"); !strings.Contains(list, "("+binding+" binding)") || strings.Count(list, "  bound") != 2 {
		t.Errorf("list:\n%s", list)
	}

	// A "reboot": the kernel state is gone, the record is not.
	ns.MustRun("ip", "addr", "flush", "dev", "lo", "to", "198.18.77.0/24")
	ns.Run("ip", "route", "flush", "table", "local", "proto", "250")
	ns.Sysctl("net.ipv4.conf.all.arp_ignore", "0")
	if got := local(a, b); len(got) != 0 {
		t.Fatalf("the reboot stand-in left %v local", got)
	}
	rs("apply")
	if got := local(a, b); len(got) != 2 || sysctls() != "1 2" {
		t.Errorf("after apply: local %v, sysctls %s; want both VIPs and 1 2", got, sysctls())
	}

	rs("remove", a)
	rs("remove", a) // idempotent
	if got := local(a, b); len(got) != 1 || got[0] != b {
		t.Errorf("after removing %s: local %v, want only %s", a, got, b)
	}
	rs("remove", b)
	if got := local(a, b); len(got) != 0 {
		t.Errorf("after removing both: local %v", got)
	}
	if got := sysctls(); got != "0 1" {
		t.Errorf("sysctls after the last remove = %s, want the originals 0 1", got)
	}
	if !strings.Contains(ns.MustRun("ip", "-o", "addr", "show", "dev", "lo"), "10.9.9.9/32") {
		t.Errorf("someone else's address on lo was removed")
	}
	if _, err := os.Stat(filepath.Join(state, realServerFile)); !os.IsNotExist(err) {
		t.Errorf("record left after the last VIP: %v", err)
	}
}
