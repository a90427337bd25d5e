//go:build linux && privileged

package kernel

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// Minimal namespace and FRR helpers, private to this package's privileged
// tests (lab/netlab had not landed when they were written).

// requireRoot skips with a clear message when the test cannot create
// namespaces; as root (where the project's tests run) nothing skips.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("privileged test: needs root to create network namespaces (run `make test-privileged` as root)")
	}
}

// runPrefix is a per-run, per-call prefix for namespaces and links: "ak", the
// process ID and a random part, at most 10 characters so that suffixed link
// names stay within IFNAMSIZ.
func runPrefix() string {
	return "ak" + strconv.FormatInt(int64(os.Getpid()%1679616), 36) + strconv.FormatInt(rand.Int64N(1679616), 36)
}

// sh runs a command and fails the test with its output when it fails.
func sh(t *testing.T, args ...string) string {
	t.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// newNetns creates a network namespace with lo down (as the kernel makes it) and
// deletes it at cleanup. It returns the namespace's file path.
func newNetns(t *testing.T, name string) string {
	t.Helper()
	sh(t, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("delete namespace %s: %v\n%s", name, err, out)
		}
	})
	return "/run/netns/" + name
}

// ipAddr is one entry of `ip -j addr show`'s addr_info.
type ipAddr struct {
	Family    string `json:"family"`
	Local     string `json:"local"`
	PrefixLen int    `json:"prefixlen"`
	Label     string `json:"label"`
	NoDAD     bool   `json:"nodad"`
}

// addrsOf lists the addresses of a device in a namespace as the ip command
// sees them, rendered "local/len [label L] [nodad]" and sorted.
func addrsOf(t *testing.T, ns, dev string) []string {
	t.Helper()
	var links []struct {
		Flags    []string `json:"flags"`
		AddrInfo []ipAddr `json:"addr_info"`
	}
	out := sh(t, "ip", "-j", "-n", ns, "addr", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("parse ip -j addr: %v\n%s", err, out)
	}
	var res []string
	for _, l := range links {
		for _, a := range l.AddrInfo {
			s := fmt.Sprintf("%s/%d", a.Local, a.PrefixLen)
			if a.Label != "" && a.Label != dev {
				s += " label " + a.Label
			}
			if a.NoDAD {
				s += " nodad"
			}
			res = append(res, s)
		}
	}
	slices.Sort(res)
	return res
}

// linkUp reports whether a device in a namespace is administratively up.
func linkUp(t *testing.T, ns, dev string) bool {
	t.Helper()
	var links []struct {
		Flags []string `json:"flags"`
	}
	out := sh(t, "ip", "-j", "-n", ns, "link", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("parse ip -j link: %v\n%s", err, out)
	}
	return slices.Contains(links[0].Flags, "UP")
}

// frrDir makes a folder that FRR's daemons, running as user frr, can use for
// their pid files, sockets and logs; it is removed at cleanup.
func frrDir(t *testing.T, name string) string {
	t.Helper()
	u, err := user.Lookup("frr")
	if err != nil {
		t.Fatalf("FRR is not installed (no user frr; run scripts/deps.sh): %v", err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	dir, err := os.MkdirTemp("", "adk-"+name+"-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(dir, uid, gid); err != nil {
		t.Fatal(err)
	}
	return dir
}

// frr is a set of FRR daemons in one namespace sharing one folder.
type frr struct {
	ns, dir string
}

// startFRR starts the given daemons (zebra first) in namespace ns, each with its
// own configuration from confs (daemon name -> text), as user frr, in the
// foreground so the test owns their PIDs; they are killed at cleanup, and their
// logs are attached to the test output when it fails.
func startFRR(t *testing.T, ns string, confs map[string]string, daemons ...string) *frr {
	t.Helper()
	f := &frr{ns: ns, dir: frrDir(t, ns)}
	for _, d := range daemons {
		conf := filepath.Join(f.dir, d+".conf")
		if err := os.WriteFile(conf, []byte(confs[d]), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"netns", "exec", ns, "/usr/lib/frr/" + d,
			"-f", conf, "-i", filepath.Join(f.dir, d+".pid"), "-z", filepath.Join(f.dir, "zserv.api"),
			"--vty_socket", f.dir, "-u", "frr", "-g", "frr", "--log", "file:" + filepath.Join(f.dir, d+".log")}
		if d == "bfdd" {
			args = append(args, "--bfdctl", filepath.Join(f.dir, "bfdd.sock"))
		}
		cmd := exec.Command("ip", args...)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s in %s: %v", d, ns, err)
		}
		// Kill by the PID we started (ip netns exec execs the daemon).
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
		if d == "zebra" {
			f.waitFile(t, "zserv.api")
		}
		f.waitFile(t, d+".vty")
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range daemons {
				b, _ := os.ReadFile(filepath.Join(f.dir, d+".log"))
				t.Logf("%s %s log:\n%s", ns, d, b)
			}
		}
	})
	return f
}

// waitFile waits (bounded) for a daemon's socket to appear.
func (f *frr) waitFile(t *testing.T, name string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := os.Stat(filepath.Join(f.dir, name)); err == nil {
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("%s: %s did not appear within 10 s", f.ns, name)
}

// vtysh runs show commands against this namespace's daemons.
func (f *frr) vtysh(t *testing.T, cmds ...string) string {
	t.Helper()
	args := []string{"--vty_socket", f.dir}
	for _, c := range cmds {
		args = append(args, "-c", c)
	}
	out, err := exec.Command("vtysh", args...).CombinedOutput()
	if err != nil {
		t.Fatalf("vtysh %v in %s: %v\n%s", cmds, f.ns, err, out)
	}
	return string(out)
}

// nextHops returns the gateways of the route to dst in a namespace's main
// table, sorted ("" entries for device routes are dropped).
func nextHops(t *testing.T, ns, dst string) []string {
	t.Helper()
	var routes []struct {
		Gateway  string `json:"gateway"`
		Nexthops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	out := sh(t, "ip", "-j", "-n", ns, "route", "show", dst)
	if err := json.Unmarshal([]byte(out), &routes); err != nil {
		t.Fatalf("parse ip -j route: %v\n%s", err, out)
	}
	var hops []string
	for _, r := range routes {
		if r.Gateway != "" {
			hops = append(hops, r.Gateway)
		}
		for _, n := range r.Nexthops {
			if n.Gateway != "" {
				hops = append(hops, n.Gateway)
			}
		}
	}
	slices.Sort(hops)
	return hops
}

// waitNextHops polls the router's FIB (every 5 ms, bounded) until the route to
// dst has exactly the wanted gateways, and returns how long that took.
func waitNextHops(t *testing.T, ns, dst string, want []string, limit time.Duration) time.Duration {
	t.Helper()
	slices.Sort(want)
	start := time.Now()
	var got []string
	for time.Since(start) < limit {
		got = nextHops(t, ns, dst)
		if slices.Equal(got, want) {
			return time.Since(start)
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("%s: route to %s has next hops %v after %v, want %v\n%s", ns, dst, got, limit, want,
		sh(t, "ip", "-n", ns, "route", "show", "table", "all"))
	return 0
}
