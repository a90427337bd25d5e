//go:build linux && vm

package e2e

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/nslab"
	"github.com/anycast-director/director/lab/observe"
	"github.com/anycast-director/director/lab/runner"
	"github.com/anycast-director/director/lab/topology"
)

// The lab as containerlab.yml defines it; the tests check these against
// what they observe rather than trusting them.
const (
	vip     = "198.18.0.10"
	router  = "router"
	client  = "client"
	webURL  = "http://198.18.0.10/"
	echoVIP = "198.18.0.10:7000"
)

var (
	directors = []string{"d1", "d2", "d3"}
	servers   = []string{"rs1", "rs2", "rs3"}
	// directorAddr and serverAddr are the nodes' LAN addresses.
	directorAddr = map[string]string{"d1": "10.0.1.11", "d2": "10.0.1.12", "d3": "10.0.1.13"}
	serverAddr   = map[string]string{"rs1": "10.0.1.21", "rs2": "10.0.1.22", "rs3": "10.0.1.23"}
)

// env is one deployed lab plus the report the scenarios fill.
type env struct {
	t      *testing.T
	lab    *runner.Lab
	dir    string // the topology copy
	report *Report
	// close prints the nodes' logs if the test failed and removes the lab.
	close func()
}

// check records an assertion in the report and fails the test when it does
// not hold.
func (e *env) check(t *testing.T, scenario, what string, ok bool, detail string, args ...any) {
	t.Helper()
	d := fmt.Sprintf(detail, args...)
	e.report.Checks = append(e.report.Checks, Check{Scenario: scenario, What: what, OK: ok, Detail: d})
	if !ok {
		t.Errorf("%s: %s: %s", scenario, what, d)
	}
}

// fatal records a failed precondition and stops the scenario.
func (e *env) fatal(t *testing.T, scenario string, err error) {
	t.Helper()
	e.report.Checks = append(e.report.Checks, Check{Scenario: scenario, What: "runs", OK: false, Detail: err.Error()})
	t.Fatalf("%s: %v", scenario, err)
}

// report is filled by the tests and written by TestMain: one RESULTS.md for
// the whole run, whichever tests ran.
var report = &Report{Loss: map[string][]LossPhase{}}

func TestMain(m *testing.M) {
	report.Date = time.Now()
	report.Kernel = kernelRelease()
	report.Commit = cmp.Or(os.Getenv("E2E_COMMIT"), "unknown")
	report.Machine = os.Getenv("E2E_MACHINE")
	if report.Machine == "" {
		report.Machine = "a VM"
	}
	code := m.Run()
	writeReport(report)
	os.Exit(code)
}

// labSetup checks the environment and copies the topology and the files it
// binds into a temporary folder, so scenarios can edit configurations in
// place (the reload) without touching the repository. It returns the
// programs folder and the copy's folder.
func labSetup(t *testing.T) (bin, dir string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the e2e lab needs root inside the VM: run make e2e")
	}
	bin = os.Getenv("E2E_BIN")
	if bin == "" {
		t.Fatal("E2E_BIN is not set: run the lab through make e2e (go run ./lab/cmd/e2e), which builds the lab programs")
	}
	root, err := topology.ModuleRoot()
	if err != nil {
		t.Fatal(err)
	}
	dir = t.TempDir()
	if out, err := exec.Command("cp", "-r", filepath.Join(root, "containerlab.yml"), filepath.Join(root, "lab"), dir).CombinedOutput(); err != nil {
		t.Fatalf("copy the topology: %v: %s", err, out)
	}
	return bin, dir
}

// TestLab deploys containerlab.yml and runs every scenario against the
// project's configuration.
func TestLab(t *testing.T) {
	bin, dir := labSetup(t)
	e := deployLab(t, dir, "containerlab.yml", bin, true)
	quiet := routerDrops(t, e)
	t.Run("Spread", func(t *testing.T) { e.spread(t) })
	t.Run("RealServerFails", func(t *testing.T) { report.RealServer = e.realServerFails(t, "real server fails", "rs3", true) })
	t.Run("ReloadWeight", func(t *testing.T) { e.reloadWeight(t) })
	if after := routerDrops(t, e); quiet >= 0 && after >= 0 {
		flaps := after - quiet
		report.Flaps = &flaps
		e.check(t, "stability", "no BGP session dropped while no director failed", flaps == 0, "%d drops", flaps)
	}
	t.Run("RealServerFailsWithoutFallback", func(t *testing.T) { e.realServerFailsWithoutFallback(t) })
	t.Run("Drain", func(t *testing.T) { e.drain(t) })
	t.Run("DirectorKilledAndAddedBack", func(t *testing.T) { e.killAndAddBack(t, "ours") })
	t.Run("DirectorFrozen", func(t *testing.T) { e.freeze(t, "ours") })
	t.Run("RouterRestart", func(t *testing.T) { e.routerRestart(t) })
	t.Run("Churn", func(t *testing.T) { e.churn(t) })
	t.Run("Drift", func(t *testing.T) { e.drift(t) })
	t.Run("Operations", func(t *testing.T) { e.operations(t) })
}

// TestBaseline deploys lab/topology/baseline.clab.yml, the same topology with
// the baseline directors' files (wlc, the kernel's IPVS sysctls), and runs
// the director-loss scenarios: their numbers are reported next to ours, not
// asserted.
func TestBaseline(t *testing.T) {
	bin, dir := labSetup(t)
	e := deployLab(t, dir, "lab/topology/baseline.clab.yml", bin, false)
	t.Run("DirectorKilledAndAddedBack", func(t *testing.T) { e.killAndAddBack(t, "baseline") })
	t.Run("DirectorFrozen", func(t *testing.T) { e.freeze(t, "baseline") })
}

// deployLab deploys a topology of the copy in dir and waits until it serves:
// every director in the router's route and every backend programmed on
// every director.
func deployLab(t *testing.T, dir, file, bin string, main bool) *env {
	t.Helper()
	path := filepath.Join(dir, file)
	topo, err := runner.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	start := time.Now()
	lab, err := runner.Deploy(ctx, topo, runner.Options{Images: topology.Images(bin),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatalf("deploy %s: %v", path, err)
	}
	e := &env{t: t, lab: lab, dir: dir, report: report}
	var once sync.Once
	e.close = func() {
		once.Do(func() {
			if t.Failed() {
				for _, n := range append(append([]string{router}, directors...), servers...) {
					t.Logf("logs of %s:\n%s", n, nslab.Tail(lab.Logs(n), 150))
				}
			}
			if err := lab.Destroy(); err != nil {
				t.Errorf("destroy the lab: %v", err)
			}
		})
	}
	t.Cleanup(e.close)
	deployed := time.Since(start)
	conv := time.Now()
	if err := e.steady(ctx, 3*time.Minute); err != nil {
		e.fatal(t, "deploy", err)
	}
	converged := time.Since(conv)
	if main {
		report.Deploy, report.Converged = deployed, converged
	}
	t.Logf("lab %s up in %s, serving %s later", path, deployed.Round(time.Millisecond), converged.Round(time.Millisecond))
	return e
}

// steady waits until the router routes the VIP to every director and every
// director has every backend of both services at weight 1.
func (e *env) steady(ctx context.Context, timeout time.Duration) error {
	var all []string
	for _, d := range directors {
		all = append(all, directorAddr[d])
	}
	deadline := time.Now().Add(timeout)
	if _, err := observe.WaitNextHops(ctx, e.lab, router, vip, all, timeout); err != nil {
		return err
	}
	for {
		err := e.allProgrammed()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// allProgrammed checks every director's IPVS for every backend at weight 1.
func (e *env) allProgrammed() error {
	for _, d := range directors {
		tbl, err := observe.ReadIPVS(e.lab, d)
		if err != nil {
			return err
		}
		for _, port := range []string{"80", "7000"} {
			svc, ok := tbl[vip+":"+port]
			if !ok {
				return fmt.Errorf("%s has no IPVS service %s:%s", d, vip, port)
			}
			for _, s := range servers {
				dst := svc.Dest(serverAddr[s] + ":" + port)
				if dst == nil || dst.Weight != 1 {
					return fmt.Errorf("%s: %s:%s not at weight 1 (%+v)", d, serverAddr[s], port, dst)
				}
			}
		}
	}
	return nil
}

// routerDrops sums connectionsDropped over the router's BGP neighbors (-1
// when it cannot be read).
func routerDrops(t *testing.T, e *env) int {
	t.Helper()
	out, err := e.lab.Exec(context.Background(), router, "vtysh", "-c", "show bgp neighbors json")
	if err != nil {
		t.Logf("read BGP neighbors: %v", err)
		return -1
	}
	total := 0
	for _, line := range strings.Split(out, "\n") {
		if _, rest, ok := strings.Cut(line, `"connectionsDropped":`); ok {
			var n int
			fmt.Sscan(strings.Trim(rest, " ,"), &n)
			total += n
		}
	}
	return total
}

func kernelRelease() string {
	data, err := os.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(data))
}

// writeReport renders RESULTS.md into $VM_OUTDIR, or prints it.
func writeReport(r *Report) {
	var b bytes.Buffer
	r.Markdown(&b)
	out := os.Getenv("VM_OUTDIR")
	if out == "" {
		fmt.Printf("RESULTS.md:\n%s", b.String())
		return
	}
	if err := os.WriteFile(filepath.Join(out, "RESULTS.md"), b.Bytes(), 0o644); err != nil {
		fmt.Fprintf(os.Stderr, "write RESULTS.md: %v\n", err)
	}
}
