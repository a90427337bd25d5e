//go:build linux && vm

package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/internal/atomicfile"
	"github.com/anycast-director/director/lab/netlab"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// The crash test's numbers: services per configuration, and SIGKILLs
// (CRASH_KILLS=N runs N instead, for a quick run against a daemon patched
// to be wrong).
const (
	crashServices = 1000
	crashKills    = 50
)

// crashKillCount returns the number of kills: CRASH_KILLS, else crashKills.
func crashKillCount(t *testing.T) int {
	s := os.Getenv("CRASH_KILLS")
	if s == "" {
		return crashKills
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 {
		t.Fatalf("CRASH_KILLS=%q: want a number of kills, 1 or more", s)
	}
	return n
}

// Addresses of the crash lab: the director and one real server namespace
// with both backend addresses, on one veth pair; services and an address
// of someone else's on the director: one on an address of its own, one on
// a VIP of ours but another port (ours only by the key, so never ours).
const (
	crashDirectorIP = "10.66.0.1"
	crashBackend1   = "10.66.0.21"
	crashBackend2   = "10.66.0.22"
	foreignAddr     = "192.0.2.99"
)

// foreignServices are someone else's IPVS services on the director.
var foreignServices = []string{"198.51.100.1:53", "198.18.0.1:8080"}

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
	watch    *fileWatch
}

// TestVMCrashAnywhere kills directord with SIGKILL at 50 random moments
// (CRASH_KILLS=N: N) while it reloads, applies operator overrides and rolls
// back a configuration of 1,000 IPVS services; after the first kill and
// after one in five of the others, the configuration file changes while the
// daemon is down (services it owned are gone from it). After every kill:
//   - no file of the state directory is half-written: state.json reads back,
//     every kept configuration matches its digest, nothing was set aside,
//     and the configuration file (which a rollback writes) and its backups
//     are each one of the versions, whole (checkStateFiles);
//   - no such file was ever written under its final name rather than
//     renamed over it (inPlaceWrites, from inotify): a kill rarely lands in
//     the microseconds a write in place lasts, the events show it always;
//   - the daemon started again removes the temporary files of the killed
//     one (leftTemporaries) and converges to exactly the IPVS state that a
//     clean start (no services of ours in the kernel) from the same
//     configuration file and the same state directory gives (diffKernel);
//   - someone else's IPVS services and address, present throughout, are
//     untouched (diffForeign).
//
// The comparisons are plain functions, made to fail on fabricated wrong
// outcomes by crash_checks_fail_test.go.
func TestVMCrashAnywhere(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	if s := os.Getenv("CRASH_SEED"); s != "" {
		fmt.Sscan(s, &seed)
	}
	t.Logf("random seed %d (rerun with CRASH_SEED=%d)", seed, seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	l := newCrashLab(t)
	foreign := l.readForeign()
	l.write(0)
	start := time.Now()
	l.start()
	l.waitConverged("first start")
	t.Logf("first start converged in %s", time.Since(start).Round(time.Millisecond))
	l.watch = watchFiles(t, l.stateDir, l.cfgPath)
	refs := map[string]map[string]kernelService{} // (file digest, overrides) -> the kernel state of a clean start
	began := time.Now()
	n := crashKillCount(t)
	var kills []string
	for i := range n {
		action := l.act(rng)
		delay := time.Duration(rng.IntN(2500)) * time.Millisecond
		time.Sleep(delay)
		l.kill()
		kill := fmt.Sprintf("%s+%s", action, delay)
		if i == 0 || rng.IntN(5) == 0 {
			kill += "+" + l.editWhileDown(rng)
		}
		kills = append(kills, kill)
		what := fmt.Sprintf("kill %d (%s)", i+1, kill)
		l.failOn(what, "a file the daemon writes is damaged", checkStateFiles(l.stateDir, l.cfgPath, l.versions), t.Fatalf)
		l.failOn(what, "a file was written in place", inPlaceWrites(l.watch.drain(), stateFinal(l.stateDir, l.cfgPath)), t.Errorf)
		left := temporaries(l.stateDir, l.cfgPath)
		snapshot := l.copyState()
		restart := time.Now()
		l.start()
		got, key := l.waitConverged("restart after " + what)
		t.Logf("%s: converged %s after the restart", what, time.Since(restart).Round(time.Millisecond))
		l.failOn(what, "the restart did not clean up", leftTemporaries(left, temporaries(l.stateDir, l.cfgPath)), t.Fatalf)
		l.failOn(what, "someone else's state changed", diffForeign(foreign, l.readForeign()), t.Fatalf)
		want, ok := refs[key]
		if !ok {
			want = l.cleanStart(snapshot, key)
			refs[key] = want
		}
		l.failOn(what, "after the restart the kernel differs from a clean start with the same configuration and state ("+key+")", diffKernel(want, got), t.Fatalf)
	}
	t.Logf("%d kills in %s (%d clean starts for reference): %s", n, time.Since(began).Round(time.Second), len(refs), strings.Join(kills, " "))
}

// failOn reports problems, if any, with fail (t.Fatalf or t.Errorf).
func (l *crashLab) failOn(what, summary string, problems []string, fail func(string, ...any)) {
	l.t.Helper()
	if len(problems) > 0 {
		fail("%s: %s:\n%s", what, summary, strings.Join(problems, "\n"))
	}
}

// editWhileDown makes the configuration file a version with another set of
// services than it has, as an operator editing it while the daemon is
// down would: the services the killed daemon owned and the new version
// does not have must go at the next start. It returns what it did.
func (l *crashLab) editWhileDown(rng *rand.Rand) string {
	l.t.Helper()
	data, err := os.ReadFile(l.cfgPath)
	if err != nil {
		l.t.Fatal(err)
	}
	v := 1 // versions 0 and 2 have the same services, version 1 others
	if slices.Index(l.versions, string(data)) == 1 {
		v = 2 * rng.IntN(2)
	}
	l.write(v)
	return fmt.Sprintf("edit-v%d", v)
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
	for i, svc := range foreignServices {
		l.ns.MustRun("ipvsadm", "-A", "-t", svc, "-s", "rr")
		l.ns.MustRun("ipvsadm", "-a", "-t", svc, "-r", fmt.Sprintf("10.9.9.%d:53", 9+i), "-g", "-w", strconv.Itoa(7+i))
	}
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

// write makes version v the configuration file, replaced whole (as an
// editor or configuration management does), so the daemon never reads
// half of it and inPlaceWrites can hold directord's writes to the rule.
func (l *crashLab) write(v int) {
	l.t.Helper()
	if err := atomicfile.Write(l.cfgPath, []byte(l.versions[v]), 0o644); err != nil {
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
func (l *crashLab) cleanStart(snapshot, key string) map[string]kernelService {
	l.t.Helper()
	l.kill()
	l.failOn("before the clean start for "+key, "a file was written in place", inPlaceWrites(l.watch.drain(), stateFinal(l.stateDir, l.cfgPath)), l.t.Errorf)
	l.watch.close()
	k, err := l.kern.read()
	if err != nil {
		l.t.Fatal(err)
	}
	var ipvsCmds, addrCmds strings.Builder
	for svc := range ourServices(k, foreignServices) {
		fmt.Fprintf(&ipvsCmds, "-D -t %s\n", svc)
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
	l.watch = watchFiles(l.t, l.stateDir, l.cfgPath)
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
// every verdict, and the kernel holds exactly the configured services of
// ours (convergenceGap), unchanged for settleFor (longer than drain_delay,
// so no destination is still draining); it returns that kernel state (ours
// only, connection counts zeroed) and the key of what it runs: the file's
// digest and the overrides. It logs how long the daemon took to run the
// file's configuration and to settle.
func (l *crashLab) waitConverged(what string) (map[string]kernelService, string) {
	l.t.Helper()
	const settleFor = 1500 * time.Millisecond
	var ours map[string]kernelService
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
		ours = withoutCounts(ourServices(k, foreignServices))
		var configured []string
		for _, svc := range s.GetServices() {
			configured = append(configured, fmt.Sprintf("%s:%d", svc.GetVip(), svc.GetPort()))
		}
		if gap := convergenceGap(ours, configured); len(gap) > 0 {
			return errors.New(strings.Join(gap, "; "))
		}
		if d := kernelDump(ours); d != dump {
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
	return ours, key
}

// kernelDump renders services in a stable form, to see when they change.
func kernelDump(k map[string]kernelService) string {
	var lines []string
	for svc, s := range k {
		lines = append(lines, svc+" "+s.String())
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// readForeign reads someone else's services and address as the kernel
// has them, connection counts zeroed.
func (l *crashLab) readForeign() foreignState {
	l.t.Helper()
	k, err := l.kern.read()
	if err != nil {
		l.t.Fatal(err)
	}
	f := foreignState{Services: map[string]kernelService{}, Addrs: map[string]bool{}}
	for key, s := range withoutCounts(k) {
		if slices.Contains(foreignServices, key) {
			f.Services[key] = s
		}
	}
	f.Addrs[foreignAddr] = slices.Contains(loAddrs(l.t, l.ns), foreignAddr+"/32")
	return f
}
