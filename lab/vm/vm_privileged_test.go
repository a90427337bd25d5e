//go:build linux && privileged

package vm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// These tests boot real VMs (about 4 s each on an idle machine). They touch no
// host network: everything they create lives in the guest's kernel.

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Getuid() != 0 {
		t.Skip("needs root: the guest reads the host's whole filesystem over 9p")
	}
}

func TestPrivilegedVMRunReturnsOutputAndStatus(t *testing.T) {
	requireRoot(t)
	dir := filepath.Join(t.TempDir(), "work dir")
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// 1.3 MB checks that no byte is lost between the program's exit and the
	// power-off: the end marker is acknowledged before /init powers off.
	var seq strings.Builder
	for i := 1; i <= 200000; i++ {
		seq.WriteString(strconv.Itoa(i))
		seq.WriteByte('\n')
	}
	tests := []struct {
		name       string
		opts       Options
		argv       []string
		wantOutput string
		wantStatus int
	}{
		{
			name:       "large stdout then stderr, status 0",
			argv:       []string{"sh", "-c", "seq 1 200000; echo err >&2"},
			wantOutput: seq.String() + "err\n",
		},
		{
			name:       "non-zero status is the program's, not an error",
			argv:       []string{"sh", "-c", "echo failing; exit 7"},
			wantOutput: "failing\n",
			wantStatus: 7,
		},
		{
			name:       "environment, working directory and root",
			opts:       Options{Env: []string{"FOO=bar baz", "PATH=/usr/bin:/bin"}, Dir: dir},
			argv:       []string{"sh", "-c", `printf '%s|%s|%s|%s' "$FOO" "$PWD" "$(id -u)" "$VM_GUEST"`},
			wantOutput: "bar baz|" + dir + "|0|1",
		},
		{
			name:       "killed by a signal",
			argv:       []string{"sh", "-c", "kill -9 $$"},
			wantStatus: 137,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var live bytes.Buffer
			tc.opts.Stdout = &live
			tc.opts.Timeout = 2 * time.Minute
			res, err := Run(context.Background(), tc.opts, tc.argv)
			if err != nil {
				t.Fatalf("Run: %v\nconsole:\n%s", err, res.Console)
			}
			if got := string(res.Output); got != tc.wantOutput {
				t.Errorf("Output is %d bytes, want %d; got ends with %q, want %q", len(got), len(tc.wantOutput),
					got[max(0, len(got)-40):], tc.wantOutput[max(0, len(tc.wantOutput)-40):])
			}
			if live.String() != string(res.Output) {
				t.Errorf("live output %q differs from Result.Output %q", live.String(), res.Output)
			}
			if res.ExitCode != tc.wantStatus {
				t.Errorf("ExitCode = %d, want %d", res.ExitCode, tc.wantStatus)
			}
			if res.Boot <= 0 || res.Boot >= res.Total {
				t.Errorf("Boot %s, Total %s: want 0 < Boot < Total", res.Boot, res.Total)
			}
			t.Logf("kernel %s: boot %s, total %s", res.KernelVersion, res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond))
		})
	}
}

// TestPrivilegedVMKernelFeatures proves what the IPVS and lab work relies on,
// in one boot: IPVS with mh and its flags, namespaces with the host's
// iproute2, a dummy link, writable /etc, FRR's zebra in a namespace (as the
// lab runs it), and files collected through the output folder.
func TestPrivilegedVMKernelFeatures(t *testing.T) {
	requireRoot(t)
	out := t.TempDir()
	script := `set -e
test -e /proc/net/ip_vs && echo "ip_vs: present"
ipvsadm -A -t 10.0.0.1:80 -s mh -b mh-port
ipvsadm -Ln | grep -q 'TCP  10.0.0.1:80 mh (mh-port)' && echo "ipvsadm: mh-port"
sysctl -n net.ipv4.vs.sloppy_tcp >/dev/null && echo "sysctl: sloppy_tcp"
ip netns add vmtest-a
ip -n vmtest-a link add d0 type dummy
ip -n vmtest-a link add v0 type veth peer name v1
ip netns list | grep -q vmtest-a && echo "netns: ok"
ip -n vmtest-a -o link show d0 | grep -q d0 && echo "dummy: ok"
echo written > /etc/vmtest-probe && echo "etc: writable"
stat -c '%U' /run/frr | grep -q frr && echo "run/frr: owned by frr"
ip -o link show lo | grep -q 'UP' && echo "lo: up"
R=/tmp/vmtest-frr; mkdir -p $R; echo 'hostname r1' > $R/zebra.conf; chown -R frr:frr $R
ip netns exec vmtest-a /usr/lib/frr/zebra -d -f $R/zebra.conf -i $R/zebra.pid -z $R/zserv.api --vty_socket $R -u frr -g frr 2>/dev/null
vtysh --vty_socket $R -d zebra -c 'show interface brief' | grep -q '^d0 ' && echo "frr: zebra sees d0"
kill "$(cat $R/zebra.pid)"
echo result-data > "$VM_OUTDIR/result.txt"
`
	res, err := Run(context.Background(), Options{OutDir: out, Timeout: 2 * time.Minute}, []string{"sh", "-c", script})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if res.ExitCode != 0 {
		t.Fatalf("script failed with status %d:\n%s", res.ExitCode, res.Output)
	}
	for _, want := range []string{"ip_vs: present", "ipvsadm: mh-port", "sysctl: sloppy_tcp", "netns: ok", "dummy: ok", "etc: writable", "run/frr: owned by frr", "lo: up", "frr: zebra sees d0"} {
		if !strings.Contains(string(res.Output), want+"\n") {
			t.Errorf("output lacks %q:\n%s", want, res.Output)
		}
	}
	data, err := os.ReadFile(filepath.Join(out, "result.txt"))
	if err != nil || string(data) != "result-data\n" {
		t.Errorf("collected file = %q, %v; want %q", data, err, "result-data\n")
	}
	if _, err := os.Stat("/etc/vmtest-probe"); err == nil {
		t.Errorf("a write to /etc in the guest reached the host")
	}
}

func TestPrivilegedVMTimeoutKillsQEMU(t *testing.T) {
	requireRoot(t)
	start := time.Now()
	const timeout = 20 * time.Second
	res, err := Run(context.Background(), Options{Timeout: timeout}, []string{"sh", "-c", "echo started; sleep 600"})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Run error = %v, want ErrTimeout", err)
	}
	if !strings.Contains(err.Error(), "qemu was killed") {
		t.Errorf("error %q does not say qemu was killed", err)
	}
	if d := time.Since(start); d > timeout+30*time.Second {
		t.Errorf("Run returned after %s, want soon after the %s timeout", d, timeout)
	}
	// On a machine busy enough to need the whole timeout to boot, the
	// program never started; the kill is still what is tested.
	if res.Boot > 0 && string(res.Output) != "started\n" {
		t.Errorf("partial output = %q, want %q", res.Output, "started\n")
	}
	if res.Boot == 0 {
		t.Logf("the VM did not finish booting within %s; error: %v", timeout, err)
	}
	if kids := qemuChildren(t); len(kids) > 0 {
		t.Errorf("qemu processes left behind: %v", kids)
	}
}

// TestPrivilegedVMModuleFailureNamesTheModule requires crc32c_intel, which
// cannot load on the emulated CPU (no SSE4.2): the error must say which
// module failed and why, from the guest's dmesg.
func TestPrivilegedVMModuleFailureNamesTheModule(t *testing.T) {
	requireRoot(t)
	mods := append(DefaultModules(), ModuleRequest{Name: "crc32c_intel"})
	_, err := Run(context.Background(), Options{Timeout: 2 * time.Minute, Assets: AssetOptions{Modules: mods}}, []string{"true"})
	if !errors.Is(err, ErrModule) {
		t.Fatalf("Run error = %v, want ErrModule", err)
	}
	for _, want := range []string{"crc32c_intel", "No such device"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q lacks %q", err, want)
		}
	}
}

// qemuChildren lists qemu processes whose parent is this test process.
func qemuChildren(t *testing.T) []string {
	t.Helper()
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	var kids []string
	me := strconv.Itoa(os.Getpid())
	for _, e := range entries {
		stat, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(stat)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "qemu") {
			continue
		}
		if f := strings.Fields(s[i+1:]); len(f) > 1 && f[1] == me {
			kids = append(kids, fmt.Sprintf("pid %s", e.Name()))
		}
	}
	return kids
}
