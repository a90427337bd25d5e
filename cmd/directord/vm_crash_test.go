//go:build linux && vm

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/netlab"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
	"github.com/anycast-director/director/statedir"
)

// The crash test's numbers: services per configuration, and SIGKILLs.
const (
	crashServices = 1000
	crashKills    = 50
)

// Addresses of the crash lab: the director and one real server namespace
// with both backend addresses, on one veth pair; a service and an address
// of someone else's on the director.
const (
	crashDirectorIP = "10.66.0.1"
	crashBackend1   = "10.66.0.21"
	crashBackend2   = "10.66.0.22"
	foreignService  = "198.51.100.1:53"
	foreignAddr     = "192.0.2.99"
)

// crashLab is the crash test's director: its files, its kernel and its
// daemon process.
type crashLab struct {
	t        *testing.T
	ns       *netlab.NS
	dir      string
	cfgPath  string
	sock     string
	stateDir string
	kern     *ipvsReader
	proc     *netlab.Proc
	versions []string // the configuration files the cycles switch between
}

// TestVMCrashAnywhere kills directord with SIGKILL at 50 random moments
// while it reloads, applies operator overrides and rolls back a
// configuration of 1,000 IPVS services. After every kill:
//   - no file of the state directory is half-written: state.json reads back,
//     every kept configuration matches its digest, nothing was set aside,
//     and the configuration file (which a rollback writes) is one of the
//     versions, whole;
//   - the daemon started again converges to exactly the IPVS state that a
//     clean start (no services of ours in the kernel) from the same
//     configuration file and the same state directory gives;
//   - someone else's IPVS service and address, present throughout, are
//     untouched.
func TestVMCrashAnywhere(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CRASH_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("random seed %d (rerun with CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	l := newCrashLab(t)
	foreign := l.foreignState()
	l.write(0)
	start := time.Now()
	l.start()
	l.waitConverged("first start")
	t.Logf("first start converged in %s", time.Since(start).Round(time.Millisecond))
	refs := map[string]string{} // (file digest, overrides) -> the kernel state of a clean start
	began := time.Now()
	var kills []string
	for i := range crashKills {
		action := l.act(rng)
		delay := time.Duration(rng.IntN(2500)) * time.Millisecond
		time.Sleep(delay)
		l.kill()
		kills = append(kills, fmt.Sprintf("%s+%s", action, delay))
		l.checkFilesWhole(i)
		snapshot := l.copyState()
		restart := time.Now()
		l.start()
		got, key := l.waitConverged(fmt.Sprintf("restart %d after %s", i+1, kills[i]))
		t.Logf("kill %d after %s: converged %s after the restart", i+1, kills[i], time.Since(restart).Round(time.Millisecond))
		if l.foreignState() != foreign {
			t.Fatalf("kill %d (%s): someone else's service or address changed:\n%s\nwas:\n%s", i+1, kills[i], l.foreignState(), foreign)
		}
		want, ok := refs[key]
		if !ok {
			want = l.cleanStart(snapshot, key)
			refs[key] = want
		}
		if got != want {
			t.Fatalf("kill %d (%s): after the restart the kernel differs from a clean start with the same configuration and state (%s):\n%s",
				i+1, kills[i], key, lineDiff(want, got))
		}
	}
	t.Logf("%d kills in %s (%d clean starts for reference): %s", crashKills, time.Since(began).Round(time.Second), len(refs), strings.Join(kills, " "))
}

func newCrashLab(t *testing.T) *crashLab {
	t.Helper()
	lab := netlab.New(t)
	l := &crashLab{t: t, dir: lab.Dir()}
	l.cfgPath = filepath.Join(l.dir, "directord.yaml")
	l.sock = filepath.Join(l.dir, "d.sock")
	l.stateDir = filepath.Join(l.dir, "state")
	l.ns = lab.Namespace("crash")
	rs := &realServer{name: "crash-rs", ip: crashBackend1}
	rs.ns = lab.Namespace("crashrs")
	lab.Link(l.ns, []string{crashDirectorIP + "/24"}, rs.ns, []string{crashBackend1 + "/24", crashBackend2 + "/24"})
	rs.start(t)
	t.Cleanup(rs.stop)
	l.ns.MustRun("ip", "addr", "add", foreignAddr+"/32", "dev", "lo")
	l.ns.MustRun("ipvsadm", "-A", "-t", foreignService, "-s", "rr")
	l.ns.MustRun("ipvsadm", "-a", "-t", foreignService, "-r", "10.9.9.9:53", "-g", "-w", "7")
	for v := range 3 {
		l.versions = append(l.versions, crashConfig(l.dir, v))
	}
	var err error
	if l.kern, err = openIPVSReader(nsPath(l.ns)); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(l.kern.close)
	return l
}

// crashConfig renders version v of the configuration: 1,000 DR services of
// two backends; version 1 replaces a tenth of the services and changes
// weights, version 2 drops a backend from half of them.
func crashConfig(dir string, v int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `director: { name: crash, announce: none, hold_down: 0s, drain_delay: 1s, resync_interval: 1s, graceful_shutdown: 0s, linger: 0s, state_dir: %[1]s/state }
api: { socket: %[1]s/d.sock, keep_configs: 4 }
metrics: { listen: "" }
log: { level: warn }
services:
`, dir)
	first := 0
	if v == 1 {
		first = crashServices / 10
	}
	for i := first; i < first+crashServices; i++ {
		w2 := 1
		if v == 1 && i%2 == 0 {
			w2 = 2
		}
		backends := fmt.Sprintf("{ address: %s }, { address: %s, weight: %d }", crashBackend1, crashBackend2, w2)
		if v == 2 && i >= crashServices/2 {
			backends = fmt.Sprintf("{ address: %s }", crashBackend1)
		}
		fmt.Fprintf(&b, "  - { name: s%d, vip: 198.18.%d.%d, port: 80, health: { type: tcp, interval: 500ms, timeout: 300ms, rise: 1, fall: 2 }, backends: [ %s ] }\n",
			i, i/250, i%250+1, backends)
	}
	return b.String()
}

// write makes version v the configuration file.
func (l *crashLab) write(v int) {
	l.t.Helper()
	if err := os.WriteFile(l.cfgPath, []byte(l.versions[v]), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// start runs directord in the director's namespace; it returns once the
// daemon serves its API.
func (l *crashLab) start() {
	l.t.Helper()
	began := time.Now()
	l.proc = l.ns.Start("directord", []string{entryEnv + "=1"}, selfCommand(l.t, "run", "-config", l.cfgPath)...)
	p := l.proc
	l.t.Cleanup(func() {
		p.Kill()
		if l.t.Failed() {
			l.t.Logf("directord (pid %d) log:\n%s", p.PID, p.Output())
		}
	})
	// The log is at warn level (1,000 services make many info lines): the
	// API's socket accepting says the daemon runs. A connection is cheap;
	// a status of 1,000 services every 100 ms would slow the start it
	// waits for.
	_, err := netlab.Wait(2*time.Minute, 100*time.Millisecond, func() error {
		if p.Exited() {
			return fmt.Errorf("directord exited:\n%s", p.Output())
		}
		c, err := net.Dial("unix", l.sock)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		l.t.Fatalf("directord did not start: %v", err)
	}
	l.t.Logf("directord (pid %d) answers its API after %s", p.PID, time.Since(began).Round(time.Millisecond))
}

// kill ends the daemon with SIGKILL.
func (l *crashLab) kill() {
	l.t.Helper()
	if err := l.proc.Signal(syscall.SIGKILL); err != nil {
		l.t.Fatal(err)
	}
	if err := l.proc.Wait(30 * time.Second); err == nil {
		l.t.Fatalf("directord exited cleanly after SIGKILL")
	}
}

// act starts one operation and returns its name without waiting for it: a
// reload of another version, a drain or enable of a backend everywhere, or
// a rollback.
func (l *crashLab) act(rng *rand.Rand) string {
	switch n := rng.IntN(4); n {
	case 0:
		v := rng.IntN(len(l.versions))
		l.write(v)
		l.proc.Signal(syscall.SIGHUP)
		return fmt.Sprintf("reload-v%d", v)
	case 1:
		go l.call(func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.DrainBackend(ctx, &directorv1.DrainBackendRequest{Backend: &directorv1.BackendRef{Address: crashBackend2}, Reason: "crash test"})
			return err
		})
		return "drain"
	case 2:
		go l.call(func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.EnableBackend(ctx, &directorv1.EnableBackendRequest{Backend: &directorv1.BackendRef{Address: crashBackend2}})
			return err
		})
		return "enable"
	default:
		go l.call(func(ctx context.Context, c directorv1.DirectorClient) error {
			_, err := c.Rollback(ctx, &directorv1.RollbackRequest{Reason: "crash test"})
			return err
		})
		return "rollback"
	}
}

// call runs f against the daemon's API; errors are expected (the daemon
// may be killed under it, a rollback may have nothing to go back to).
func (l *crashLab) call(f func(context.Context, directorv1.DirectorClient) error) error {
	conn, err := grpc.NewClient("unix://"+l.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return f(ctx, directorv1.NewDirectorClient(conn))
}

// checkFilesWhole fails the test unless every file the daemon writes is
// whole after a kill.
func (l *crashLab) checkFilesWhole(i int) {
	l.t.Helper()
	f, err := statedir.NewStore(l.stateDir).Read()
	if err != nil || f == nil {
		l.t.Fatalf("kill %d: the state file does not read back: %v (%v)", i+1, err, f)
	}
	for _, c := range f.Configs {
		data, err := os.ReadFile(filepath.Join(l.stateDir, statedir.ConfigsDir, c.Digest+".yaml"))
		if err != nil || config.Digest(data) != c.Digest {
			l.t.Fatalf("kill %d: kept configuration %d (%s) is missing or damaged: %v", i+1, c.Version, c.Digest, err)
		}
	}
	if aside, _ := filepath.Glob(filepath.Join(l.stateDir, statedir.FileName+".bad-*")); len(aside) > 0 {
		l.t.Fatalf("kill %d: a state file was set aside: %v", i+1, aside)
	}
	data, err := os.ReadFile(l.cfgPath)
	if err != nil || !slices.Contains(l.versions, string(data)) {
		l.t.Fatalf("kill %d: the configuration file is not one of the versions (%d bytes, %v)", i+1, len(data), err)
	}
}

// copyState copies the state directory as the kill left it.
func (l *crashLab) copyState() string {
	l.t.Helper()
	dst := filepath.Join(l.dir, fmt.Sprintf("state-%d", time.Now().UnixNano()))
	if out, err := exec.Command("cp", "-a", l.stateDir, dst).CombinedOutput(); err != nil {
		l.t.Fatalf("copy the state: %v\n%s", err, out)
	}
	return dst
}

// cleanStart measures the reference for key: the daemon stopped, every
// IPVS service and VIP of ours removed from the kernel, the state directory
// as snapshot had it, a fresh start on the same file.
func (l *crashLab) cleanStart(snapshot, key string) string {
	l.t.Helper()
	l.kill()
	k, err := l.kern.read()
	if err != nil {
		l.t.Fatal(err)
	}
	var ipvsCmds, addrCmds strings.Builder
	for svc := range k {
		if svc != foreignService {
			fmt.Fprintf(&ipvsCmds, "-D -t %s\n", svc)
		}
	}
	for _, a := range loAddrs(l.t, l.ns) {
		if strings.HasPrefix(a, "198.18.") {
			fmt.Fprintf(&addrCmds, "addr del %s dev lo\n", a)
		}
	}
	l.batch("ipvsadm -R <", ipvsCmds.String())
	l.batch("ip -batch", addrCmds.String())
	if err := os.RemoveAll(l.stateDir); err != nil {
		l.t.Fatal(err)
	}
	if out, err := exec.Command("cp", "-a", snapshot, l.stateDir).CombinedOutput(); err != nil {
		l.t.Fatalf("restore the state: %v\n%s", err, out)
	}
	l.start()
	got, gotKey := l.waitConverged("clean start for " + key)
	if gotKey != key {
		l.t.Fatalf("the clean start runs %s, the crashed one ran %s", gotKey, key)
	}
	return got
}

// batch runs one command in the director's namespace on a file of
// commands (one process for a thousand deletions, not a thousand processes).
func (l *crashLab) batch(command, commands string) {
	l.t.Helper()
	if commands == "" {
		return
	}
	f := filepath.Join(l.dir, "batch")
	if err := os.WriteFile(f, []byte(commands), 0o600); err != nil {
		l.t.Fatal(err)
	}
	l.ns.MustRun("sh", "-c", command+" "+f)
}

// waitConverged waits until the daemon runs the file's configuration, has
// every verdict, and the kernel holds exactly the configured services,
// unchanged for settleFor (longer than drain_delay, so no destination is
// still draining); it returns that kernel state (ours only) and the key of
// what it runs: the file's digest and the overrides. It logs how long the
// daemon took to run the file's configuration and to settle.
func (l *crashLab) waitConverged(what string) (string, string) {
	l.t.Helper()
	const settleFor = 1500 * time.Millisecond
	var dump, key string
	var changed, running time.Time
	began := time.Now()
	_, err := netlab.Wait(3*time.Minute, 500*time.Millisecond, func() error {
		data, err := os.ReadFile(l.cfgPath)
		if err != nil {
			return err
		}
		var s *directorv1.GetStatusResponse
		if err := l.call(func(ctx context.Context, c directorv1.DirectorClient) error {
			s, err = c.GetStatus(ctx, &directorv1.GetStatusRequest{})
			return err
		}); err != nil {
			return err
		}
		if s.GetLearning() || s.GetConfig().GetDigest() != config.Digest(data) {
			return fmt.Errorf("running %s (learning %v), the file is %s", s.GetConfig().GetDigest(), s.GetLearning(), config.Digest(data))
		}
		if running.IsZero() {
			running = time.Now()
		}
		k, err := l.kern.read()
		if err != nil {
			return err
		}
		if len(k)-1 != len(s.GetServices()) {
			return fmt.Errorf("the kernel has %d services of ours, the configuration %d", len(k)-1, len(s.GetServices()))
		}
		if d := kernelDump(k); d != dump {
			dump, changed = d, time.Now()
		}
		if time.Since(changed) < settleFor {
			return fmt.Errorf("the kernel changed %s ago", time.Since(changed).Round(time.Millisecond))
		}
		var ov []string
		for _, o := range s.GetOverrides() {
			ov = append(ov, o.GetKind().String()+" "+o.GetBackend().GetAddress())
		}
		key = config.Digest(data) + " [" + strings.Join(ov, ", ") + "]"
		return nil
	})
	if err != nil {
		l.t.Fatalf("%s: did not converge: %v", what, err)
	}
	l.t.Logf("%s: running the file's configuration after %s, the kernel settled after %s", what,
		running.Sub(began).Round(time.Millisecond), changed.Sub(began).Round(time.Millisecond))
	return dump, key
}

// kernelDump renders our services (all but the foreign one) in a stable
// form: key, scheduler, destinations in kernel order with weights.
func kernelDump(k map[string]kernelService) string {
	var lines []string
	for svc, s := range k {
		if svc == foreignService {
			continue
		}
		var ds []string
		for _, d := range s.Dests {
			ds = append(ds, fmt.Sprintf("%s/%s/%d", d.Addr, d.Fwd, d.Weight))
		}
		lines = append(lines, fmt.Sprintf("%s %s %s", svc, s.Scheduler, strings.Join(ds, " ")))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// foreignState renders someone else's service and address as the kernel
// has them.
func (l *crashLab) foreignState() string {
	l.t.Helper()
	k, err := l.kern.read()
	if err != nil {
		l.t.Fatal(err)
	}
	s := k[foreignService]
	has := slices.Contains(loAddrs(l.t, l.ns), foreignAddr+"/32")
	return fmt.Sprintf("%s %s %v; address %s present %v", foreignService, s.Scheduler, s.Dests, foreignAddr, has)
}

// lineDiff lists the lines only in want (-) or only in got (+), at most 20.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for _, x := range w {
		if !slices.Contains(g, x) {
			out = append(out, "- "+x)
		}
	}
	for _, x := range g {
		if !slices.Contains(w, x) {
			out = append(out, "+ "+x)
		}
	}
	if len(out) > 20 {
		out = append(out[:20], fmt.Sprintf("... and %d more", len(out)-20))
	}
	return strings.Join(out, "\n")
}
