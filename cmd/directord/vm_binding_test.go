//go:build vm

package main

import (
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestVMLeastPrivilegeLocalRoute runs the daemon the way the packaged unit
// does, on a kernel with IPVS: as an unprivileged user with only
// CAP_NET_ADMIN, CAP_NET_RAW and CAP_NET_BIND_SERVICE. It also forces the
// local-route VIP binding, the fallback for kernels before 6.1 (which cannot
// be booted here), and proves it serves DR and IP-in-IP traffic: the VIPs
// are local routes, not addresses, and every real server answers.
func TestVMLeastPrivilegeLocalRoute(t *testing.T) {
	l := newVMLab(t)
	kern, err := openIPVSReader(nsPath(l.director))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(kern.close)
	run := filepath.Join(l.dir, "run")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(run, nobody, nobody); err != nil {
		t.Fatal(err)
	}
	l.sock = filepath.Join(run, "d.sock")
	l.writeConfig(2)
	forceLocalRoute(t, l.cfgPath)
	bin := copyForNobody(t, l.dir)

	argv := selfCommand(t, "run", "-config", l.cfgPath)
	argv[0] = bin
	p := l.director.Start("directord", []string{entryEnv + "=1"}, setprivArgs(unitCaps, argv...)...)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("directord log:\n%s", p.Output())
		}
	})
	if line, _, err := p.WaitOutput("VIP binding chosen", 0, 60*time.Second); err != nil || !strings.Contains(line, "binding=local-route") {
		t.Fatalf("binding line %q, %v", line, err)
	}
	if _, _, err := p.WaitOutput("directord running", 0, 60*time.Second); err != nil {
		t.Fatal(err)
	}
	waitKernel(t, kern, "both services with all destinations", 30*time.Second, func(k map[string]kernelService) error {
		if w, u := len(order(k, webKey)), len(order(k, tunKey)); w != 3 || u != 2 {
			return fmt.Errorf("web has %d destinations, tun %d; want 3 and 2", w, u)
		}
		return nil
	})
	for _, vip := range []string{webVIP, tunVIP} {
		if slices.Contains(loAddrs(t, l.director), vip+"/32") {
			t.Errorf("VIP %s is an address on lo; the local-route binding must not add one", vip)
		}
		if r := l.director.MustRun("ip", "route", "show", "table", "local", "proto", "250", vip); !strings.Contains(r, "local "+vip) {
			t.Errorf("no local route of ours for %s: %q", vip, r)
		}
	}
	web := l.spread(webVIP, 40)
	if diff := cmp.Diff([]string{"rs1", "rs2", "rs3"}, keysOf(web)); diff != "" {
		t.Errorf("web: real servers that answered 40 requests %v (-want +got):\n%s", web, diff)
	}
	tun := l.spread(tunVIP, 20)
	if diff := cmp.Diff([]string{"rs1", "rs2"}, keysOf(tun)); diff != "" {
		t.Errorf("tun: real servers that answered 20 requests %v (-want +got):\n%s", tun, diff)
	}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.PID))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{fmt.Sprintf("Uid:\t%d\t", nobody), "CapEff:\t0000000000003400"} {
		if !strings.Contains(string(status), want) {
			t.Errorf("the daemon's /proc status lacks %q", want)
		}
	}
	if err := p.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	if err := p.Wait(30 * time.Second); err != nil {
		t.Errorf("SIGTERM: %v", err)
	}
}

// forceLocalRoute adds vip_binding: local-route to the director section.
func forceLocalRoute(t *testing.T, path string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := strings.Replace(string(data), "  announce: none\n", "  announce: none\n  vip_binding: local-route\n", 1)
	if out == string(data) {
		t.Fatal("the lab configuration has no announce: none line to extend")
	}
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
}

// copyForNobody copies the test binary where an unprivileged user can run it
// (vmtest's own folder is private to root).
func copyForNobody(t *testing.T, dir string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst := filepath.Join(dir, "directord.test")
	f, err := os.OpenFile(dst, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(f, src); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	return dst
}
