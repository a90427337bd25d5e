//go:build linux && privileged

package runner_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/runner"
	"github.com/anycast-director/director/lab/topology"
)

// deploy loads and deploys a topology and registers its removal, checking
// that nothing of the lab is left afterwards.
func deploy(t *testing.T, path string, images []runner.Image) *runner.Lab {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("runner: deploying a lab needs root (network namespaces); run make test-privileged as root")
	}
	topo, err := runner.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	lab, err := runner.Deploy(ctx, topo, runner.Options{Images: images})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		var procs []*runner.Proc
		for _, n := range topo.Nodes {
			procs = append(procs, lab.Procs(n.Name)...)
		}
		state := lab.StateDir()
		if err := lab.Destroy(); err != nil {
			t.Errorf("Destroy: %v", err)
		}
		out, _ := exec.Command("ip", "netns", "list").Output()
		if strings.Contains(string(out), lab.Prefix()) {
			t.Errorf("namespaces of the lab are left after Destroy:\n%s", out)
		}
		for _, p := range procs {
			if !p.Exited() {
				t.Errorf("process %s (pid %d) still runs after Destroy", p.Name, p.PID)
			}
		}
		if _, err := os.Stat(state); !os.IsNotExist(err) {
			t.Errorf("state folder %s is left after Destroy (%v)", state, err)
		}
	})
	return lab
}

func mustExec(t *testing.T, lab *runner.Lab, node string, argv ...string) string {
	t.Helper()
	out, err := lab.Exec(context.Background(), node, argv...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func TestPrivilegedSmallTopology(t *testing.T) {
	if _, err := os.Stat("/etc/clab-runner-test"); err == nil {
		t.Fatal("/etc/clab-runner-test exists on this machine; the test checks that it is never created")
	}
	lab := deploy(t, "testdata/small.clab.yml", []runner.Image{{Repository: "example/host"}})

	if got := mustExec(t, lab, "a", "hostname"); got != "a" {
		t.Errorf("hostname in node a = %q", got)
	}
	if got := mustExec(t, lab, "a", "cat", "/etc/clab-runner-test/greeting.txt"); got != "hello from the topology" {
		t.Errorf("bound file in node a = %q", got)
	}
	if _, err := lab.Exec(context.Background(), "a", "sh", "-c", "echo x > /etc/clab-runner-test/greeting.txt"); err == nil {
		t.Error("a read-only bind was writable")
	}
	if got := mustExec(t, lab, "a", "ls", "/srv/clab-runner-test"); got != "greeting.txt" {
		t.Errorf("bound folder in node a lists %q", got)
	}
	if _, err := os.Stat("/etc/clab-runner-test"); err == nil {
		t.Error("the bind target's folder appeared outside the node")
	}
	if _, err := lab.Exec(context.Background(), "b", "test", "-e", "/etc/clab-runner-test"); err == nil {
		t.Error("node a's bind is visible in node b")
	}
	said, err := lab.Path("a", "/tmp/said")
	if err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(said); err != nil || strings.TrimSpace(string(data)) != "hello from a" {
		t.Errorf("exec line with env and hostname wrote %q (%v)", data, err)
	}
	if got := mustExec(t, lab, "a", "sh", "-c", "echo $CLAB_INTFS $COUNT"); got != "2 3" {
		t.Errorf("CLAB_INTFS and env COUNT in a = %q, want \"2 3\"", got)
	}
	if got := mustExec(t, lab, "a", "sysctl", "-n", "net.ipv4.ip_forward"); got != "1" {
		t.Errorf("sysctl net.ipv4.ip_forward in a = %s", got)
	}
	for _, c := range []struct{ node, dev, want string }{
		{"a", "eth1", "10.9.0.1/24"}, {"a", "eth2", "10.9.1.1/30"}, {"b", "eth1", "10.9.0.2/24"}, {"c", "eth1", "10.9.1.2/30"},
	} {
		if got := mustExec(t, lab, c.node, "ip", "-br", "addr", "show", "dev", c.dev); !strings.Contains(got, c.want) {
			t.Errorf("%s %s: %q lacks %s", c.node, c.dev, got, c.want)
		}
	}
	if got := mustExec(t, lab, "c", "cat", "/sys/class/net/eth1/mtu"); got != "1400" {
		t.Errorf("mtu of c:eth1 = %s, want 1400 from the link", got)
	}
	// Across the bridge (b -> a) and over the point-to-point link (c -> a).
	for _, p := range []struct{ from, to string }{{"b", "10.9.0.1"}, {"c", "10.9.1.1"}} {
		if out, err := lab.Exec(context.Background(), p.from, "busybox", "ping", "-c", "1", "-W", "2", p.to); err != nil {
			t.Errorf("ping %s from %s: %v %s", p.to, p.from, err, out)
		}
	}
	bridged := mustExecCmd(t, exec.Command("ip", "-n", lab.NetNS("sw"), "-br", "link", "show", "master", "sw"))
	if !strings.Contains(bridged, "sw-a") || !strings.Contains(bridged, "sw-b") {
		t.Errorf("bridge sw ports: %q", bridged)
	}

	// A stopped node takes its links with it; started again, they come
	// back, the peer end unconfigured (as with a restarted container).
	if err := lab.StopNode("c"); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.Exec(context.Background(), "a", "ip", "link", "show", "eth2"); err == nil {
		t.Error("a:eth2 still exists after its peer node stopped")
	}
	if err := lab.StartNode(context.Background(), "c"); err != nil {
		t.Fatal(err)
	}
	if got := mustExec(t, lab, "c", "ip", "-br", "addr", "show", "dev", "eth1"); !strings.Contains(got, "10.9.1.2/30") {
		t.Errorf("c:eth1 after restart: %q", got)
	}
	if got := mustExec(t, lab, "a", "ip", "-br", "addr", "show", "dev", "eth2"); strings.Contains(got, "10.9.1.1") || !strings.Contains(got, "eth2") {
		t.Errorf("a:eth2 after c restarted: %q, want the interface without its old address", got)
	}

	// Pause freezes every process of the node; Unpause resumes them.
	b := lab.Procs("b")
	if len(b) != 1 {
		t.Fatalf("node b has %d role processes, want its cmd", len(b))
	}
	if err := lab.Pause("b"); err != nil {
		t.Fatal(err)
	}
	if st := waitState(b[0].PID, func(s string) bool { return s == "T" }); st != "T" {
		t.Errorf("paused process state %q, want T", st)
	}
	if err := lab.Unpause("b"); err != nil {
		t.Fatal(err)
	}
	if st := waitState(b[0].PID, func(s string) bool { return s != "T" }); st == "T" {
		t.Error("process still stopped after Unpause")
	}
	if err := lab.RestartRole(context.Background(), "b", time.Second); err != nil {
		t.Fatal(err)
	}
	if nb := lab.Procs("b"); len(nb) != 1 || nb[0].PID == b[0].PID || !b[0].Exited() {
		t.Errorf("RestartRole: old pid %d exited=%v, new %v", b[0].PID, b[0].Exited(), nb)
	}
}

// waitState polls a process's state until ok or 2 s pass (signals are
// delivered asynchronously).
func waitState(pid int, ok func(string) bool) string {
	var st string
	for range 100 {
		if st = procState(pid); ok(st) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	return st
}

func procState(pid int) string {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return ""
	}
	// pid (comm) state ...
	rest := string(data)[strings.LastIndexByte(string(data), ')')+2:]
	return rest[:1]
}

// mustExec for host commands.
func mustExecCmd(t *testing.T, cmd *exec.Cmd) string {
	t.Helper()
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v: %s", cmd, err, out)
	}
	return strings.TrimSpace(string(out))
}

// TestPrivilegedRepositoryTopology runs a copy of the repository's
// containerlab.yml on this machine's kernel (no IPVS here, so the VIP is not
// announced; IPVS is the VM's job in make e2e). It proves that the runner
// takes the lab from the file: an address changed in the copy is the
// address the client gets, FRR starts from the bound files and peers with
// every directord over BGP with BFD, and each node sees its own bound
// configuration.
func TestPrivilegedRepositoryTopology(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runner: deploying a lab needs root (network namespaces); run make test-privileged as root")
	}
	root, err := topology.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := t.TempDir()
	if err := topology.Build(context.Background(), root, bin); err != nil {
		t.Fatal(err)
	}
	// A copy of the topology and its files, with the client moved.
	dir := t.TempDir()
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "lab"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copy lab/: %v %s", err, out)
	}
	yml, err := os.ReadFile(filepath.Join(root, "containerlab.yml"))
	if err != nil {
		t.Fatal(err)
	}
	moved := strings.Replace(string(yml), "ip addr add 192.0.2.2/24 dev eth1", "ip addr add 192.0.2.77/24 dev eth1", 1)
	if moved == string(yml) {
		t.Fatal("containerlab.yml no longer assigns 192.0.2.2/24 to the client; update this test")
	}
	path := filepath.Join(dir, "containerlab.yml")
	if err := os.WriteFile(path, []byte(moved), 0o644); err != nil {
		t.Fatal(err)
	}
	lab := deploy(t, path, topology.Images(bin))

	addr := mustExec(t, lab, "client", "ip", "-br", "addr", "show", "dev", "eth1")
	if !strings.Contains(addr, "192.0.2.77/24") || strings.Contains(addr, "192.0.2.2/") {
		t.Errorf("client eth1 = %q, want the copy's 192.0.2.77/24 only", addr)
	}
	want, err := os.ReadFile(filepath.Join(dir, "lab/topology/directors/d2.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := mustExec(t, lab, "d2", "cat", "/etc/directord/directord.yaml"); got != strings.TrimSpace(string(want)) {
		t.Errorf("d2 sees a different /etc/directord/directord.yaml than its bind source")
	}
	if got := mustExec(t, lab, "rs1", "sysctl", "-n", "net.ipv4.conf.all.arp_ignore", "net.ipv4.conf.all.arp_announce"); got != "1\n2" {
		t.Errorf("rs1 ARP sysctls after directord realserver: %q", got)
	}
	if got := mustExec(t, lab, "rs1", "ip", "-br", "addr", "show", "dev", "lo"); !strings.Contains(got, "198.18.0.10/32") {
		t.Errorf("rs1 lo lacks the VIP: %q", got)
	}
	if got := mustExec(t, lab, "router", "sysctl", "-n", "net.ipv4.fib_multipath_hash_policy"); got != "1" {
		t.Errorf("router fib_multipath_hash_policy = %s", got)
	}
	// FRR (from the bound daemons file and frr.conf) peers with all three
	// directors, each session with BFD up.
	deadline := time.Now().Add(30 * time.Second)
	var last string
	for {
		out, err := lab.Exec(context.Background(), "router", "vtysh", "-c", "show bgp neighbors json")
		var nbrs map[string]struct {
			State string `json:"bgpState"`
			BFD   *struct {
				Status string `json:"status"`
			} `json:"peerBfdInfo"`
		}
		up := 0
		if err == nil && json.Unmarshal([]byte(out), &nbrs) == nil {
			for _, n := range nbrs {
				if n.State == "Established" && n.BFD != nil && n.BFD.Status == "Up" {
					up++
				}
			}
			last = fmt.Sprintf("%d of %d established with BFD up: %s", up, len(nbrs), out)
		} else {
			last = fmt.Sprintf("%v %s", err, out)
		}
		if up == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the router's BGP sessions did not come up: %s\n%s", last, lab.Logs("d1"))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestPrivilegedDeployFailureCleansUp: a failing exec line fails Deploy,
// which removes everything it had created.
func TestPrivilegedDeployFailureCleansUp(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("runner: deploying a lab needs root (network namespaces); run make test-privileged as root")
	}
	yml := `name: broken
topology:
  nodes:
    a: {kind: linux, image: example/host, cmd: sleep infinity, exec: ["ip link set eth1 up", "false"]}
    b: {kind: linux, image: example/host, cmd: sleep infinity}
    sw: {kind: bridge}
  links:
    - endpoints: ["a:eth1", "sw:sw-a"]
    - endpoints: ["b:eth1", "sw:sw-b"]
`
	topo, err := runner.Parse(t.TempDir(), []byte(yml))
	if err != nil {
		t.Fatal(err)
	}
	prefix := fmt.Sprintf("clfail%d-", os.Getpid()%100000)
	_, err = runner.Deploy(context.Background(), topo, runner.Options{Images: []runner.Image{{Repository: "example/host"}}, Prefix: prefix})
	if err == nil || !strings.Contains(err.Error(), "exec") || !strings.Contains(err.Error(), "false") {
		t.Fatalf("Deploy error = %v, want the failing exec line", err)
	}
	out, _ := exec.Command("ip", "netns", "list").Output()
	if strings.Contains(string(out), prefix) {
		t.Errorf("namespaces left after a failed Deploy:\n%s", out)
	}
	ps, _ := exec.Command("pgrep", "-f", "sleep infinity").Output()
	for _, pid := range strings.Fields(string(ps)) {
		if data, err := os.ReadFile("/proc/" + pid + "/environ"); err == nil && strings.Contains(string(data), "HOSTNAME=a\x00") && strings.Contains(string(data), "CLAB_INTFS=1") {
			t.Errorf("process %s of the failed lab still runs", pid)
		}
	}
}
