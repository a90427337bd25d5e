// Command benchcompare runs keepalived and directord side by side in one VM
// boot (lab/compare) and writes BENCH-compare.md (`make bench-compare`).
//
//	go run ./lab/cmd/benchcompare [-n 100,1000] [-reps 3] [-out BENCH-compare.md]
//	go run ./lab/cmd/benchcompare -smoke      # N=10, one repetition: checks the harness
//	go run ./lab/cmd/benchcompare -from results.json -out BENCH-compare.md   # render saved results again
//
// A run narrowed with -n, -reps, -only or -daemon says in its report that it is
// partial and how it was made.
//
// On the host it builds directord, boots the VM and runs itself inside it
// (VM_GUEST=1), then renders the results. Exit status 1: a run failed or the
// VM did; the report is still written when there are results.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anycast-director/director/lab/compare"
	"github.com/anycast-director/director/lab/vm"
)

// flags are the command's settings; the host passes them on to the guest.
type flags struct {
	ns        string
	reps      int
	steady    time.Duration
	smoke     bool
	out, json string
	directord string
	guestOut  string
	only      string
	daemon    string
	logs      string
	profile   bool
	timeout   time.Duration
	from      string
}

func main() {
	var f flags
	flag.StringVar(&f.ns, "n", fullNs, "numbers of services to compare, comma-separated")
	flag.IntVar(&f.reps, "reps", fullReps, "repetitions of each scenario")
	flag.DurationVar(&f.steady, "steady", 20*time.Second, "steady-state window for CPU and probes")
	flag.BoolVar(&f.smoke, "smoke", false, "N=10, one repetition, short windows: checks the harness")
	flag.StringVar(&f.out, "out", "BENCH-compare.md", "report to write (empty: none)")
	flag.StringVar(&f.json, "json", "", "also write the raw results as JSON here")
	flag.StringVar(&f.directord, "directord", "", "directord binary (default: build ./cmd/directord)")
	flag.StringVar(&f.guestOut, "guest-out", "", "internal: where the guest writes its results")
	flag.StringVar(&f.only, "only", "", "run only the distinct or only the shared scenarios")
	flag.StringVar(&f.daemon, "daemon", "", "run only this daemon (directord or keepalived): an investigation, without ratios")
	flag.StringVar(&f.logs, "logs", "", "keep every daemon's log (and perf profiles) in this folder")
	flag.BoolVar(&f.profile, "profile", false, "record each daemon's steady window with perf (into -logs)")
	flag.DurationVar(&f.timeout, "timeout", 0, "stop the VM after this long and report what was measured (default: generous for the scenarios)")
	flag.StringVar(&f.from, "from", "", "only render the report (-out) from results saved with -json")
	flag.Parse()
	if f.smoke {
		f.ns, f.reps, f.steady = "10", 1, 6*time.Second
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	var err error
	switch {
	case f.from != "":
		err = render(f)
	case os.Getenv("VM_GUEST") == "1":
		err = guest(ctx, f)
	default:
		err = host(ctx, f)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchcompare:", err)
		os.Exit(1)
	}
}

// scenarios are the configurations for the -n list: distinct then shared
// targets for each N, 10 real servers, TCP checks every 2 s with a 1 s
// timeout and fall 3.
func scenarios(ns, only string) ([]compare.Scenario, error) {
	if only != "" && only != "distinct" && only != "shared" {
		return nil, fmt.Errorf("-only: %q is neither distinct nor shared", only)
	}
	var out []compare.Scenario
	for _, field := range strings.Split(ns, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(field))
		if err != nil || n < 1 || n > 20000 {
			return nil, fmt.Errorf("-n: %q is not a number of services from 1 to 20000", field)
		}
		for _, shared := range []bool{false, true} {
			if only != "" && shared != (only == "shared") {
				continue
			}
			out = append(out, compare.Scenario{Services: n, RealServers: 10, Shared: shared,
				Interval: 2 * time.Second, Timeout: time.Second, Fall: 3})
		}
	}
	return out, nil
}

// guest runs the comparison inside the VM and writes the results as JSON.
func guest(ctx context.Context, f flags) error {
	ss, err := scenarios(f.ns, f.only)
	if err != nil {
		return err
	}
	bins := compare.Binaries{Directord: f.directord, Keepalived: "/usr/sbin/keepalived"}
	if err := compare.Check(bins); err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "benchcompare")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	save := func(res compare.Results) error {
		b, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		tmp := f.guestOut + ".tmp"
		if err := os.WriteFile(tmp, b, 0o644); err != nil {
			return err
		}
		return os.Rename(tmp, f.guestOut)
	}
	res, err := compare.Measure(ctx, compare.Options{Scenarios: ss, Reps: f.reps, Only: compare.Daemon(f.daemon), Binaries: bins, Dir: dir,
		Prefix: fmt.Sprintf("bc%d", os.Getpid()), Log: os.Stdout, OutDir: filepath.Join(filepath.Dir(f.guestOut), "logs"),
		Profile: f.profile, Progress: func(r compare.Results) { _ = save(r) },
		Timing: compare.Timing{Steady: f.steady, Settle: 3 * time.Second, Limit: 5 * time.Minute}})
	if serr := save(res); serr != nil {
		return serr
	}
	return err
}

// host builds directord, runs the guest in a VM and writes the report.
func host(ctx context.Context, f flags) error {
	ss, err := scenarios(f.ns, f.only)
	if err != nil {
		return err
	}
	if d := compare.Daemon(f.daemon); d != "" && d != compare.Directord && d != compare.Keepalived {
		return fmt.Errorf("-daemon: %q is neither directord nor keepalived", f.daemon)
	}
	tmp, err := os.MkdirTemp("", "benchcompare")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if f.directord == "" {
		f.directord = filepath.Join(tmp, "directord")
		if out, err := exec.CommandContext(ctx, "go", "build", "-o", f.directord, "./cmd/directord").CombinedOutput(); err != nil {
			return fmt.Errorf("build directord: %w: %s", err, out)
		}
	}
	self, err := os.Executable()
	if err != nil {
		return err
	}
	hostInfo := compare.HostInfo()
	outDir := filepath.Join(tmp, "out")
	if f.logs != "" {
		if outDir, err = filepath.Abs(f.logs); err != nil {
			return err
		}
	}
	args := []string{self, "-n", f.ns, "-reps", strconv.Itoa(f.reps), "-steady", f.steady.String(), "-only", f.only, "-daemon", f.daemon,
		"-directord", f.directord, "-guest-out", filepath.Join(outDir, "results.json"), "-profile=" + strconv.FormatBool(f.profile)}
	limit := f.timeout
	if limit == 0 {
		limit = vmTimeout(ss, f)
	}
	vres, verr := vm.Run(ctx, vm.Options{Memory: 3072, CPUs: 2, Timeout: limit, OutDir: outDir,
		Stdout: os.Stderr}, args)
	b, rerr := os.ReadFile(filepath.Join(outDir, "results.json"))
	if rerr != nil {
		return fmt.Errorf("no results from the VM (VM: %v, exit status %d): %w", verr, vres.ExitCode, rerr)
	}
	var res compare.Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("results from the VM: %w", err)
	}
	res.Scenarios = ss // a run cut short reports the scenarios it did not reach as not measured
	hostInfo.LoadAfter = compare.LoadAverage()
	res.Host, res.Commit = hostInfo, binaryCommit(f.directord)
	if err := writeOutputs(f, res); err != nil {
		return err
	}
	if verr != nil {
		return verr
	}
	if vres.ExitCode != 0 {
		return fmt.Errorf("the comparison in the VM exited %d", vres.ExitCode)
	}
	return compare.Failed(res)
}

// binaryCommit is the commit the measured directord was built from, as its
// version command says; the working tree's when it does not say (the tree
// may have moved on while the comparison ran).
func binaryCommit(bin string) string {
	out, err := exec.Command(bin, "version").Output()
	if err == nil {
		for _, line := range strings.Split(string(out), "\n") {
			if c, ok := strings.CutPrefix(strings.TrimSpace(line), "commit:"); ok && len(strings.TrimSpace(c)) >= 12 {
				return strings.TrimSpace(c)[:12]
			}
		}
	}
	return compare.Commit(".")
}

// vmTimeout bounds the VM: about 3 minutes per daemon run at N=1,000, less
// for smaller N, plus boot.
func vmTimeout(ss []compare.Scenario, f flags) time.Duration {
	total := 2 * time.Minute
	for _, s := range ss {
		per := time.Minute + f.steady + time.Duration(s.Services)*150*time.Millisecond
		total += 2 * time.Duration(f.reps) * per
	}
	return total
}

// writeOutputs writes the report and the JSON.
func writeOutputs(f flags, res compare.Results) error {
	if f.json != "" {
		raw, err := json.MarshalIndent(res, "", "  ")
		if err != nil {
			return err
		}
		if err := os.WriteFile(f.json, raw, 0o644); err != nil {
			return err
		}
	}
	if f.out == "" {
		return nil
	}
	file, err := os.Create(f.out)
	if err != nil {
		return err
	}
	by, partial := madeBy(res)
	if partial != "" {
		res.Partial = partial
	}
	compare.WriteReport(file, res, by)
	return file.Close()
}

// The full comparison (`make bench-compare`): these numbers of services and
// repetitions.
const (
	fullNs   = "100,1000"
	fullReps = 3
)

// madeBy is the command that regenerates a report of res: make
// bench-compare for a full run, otherwise the command with the flags that
// narrowed it and what the narrowing left out, so a partial report says
// that it is one.
func madeBy(res compare.Results) (by, partial string) {
	var ns []string
	only := ""
	kinds := map[bool]bool{}
	for _, s := range res.Scenarios {
		if n := strconv.Itoa(s.Services); !slices.Contains(ns, n) {
			ns = append(ns, n)
		}
		kinds[s.Shared] = true
	}
	if len(kinds) == 1 {
		only = " -only distinct"
		if kinds[true] {
			only = " -only shared"
		}
	}
	got := strings.Join(ns, ",")
	if got == fullNs && res.Reps == fullReps && only == "" && res.Only == "" {
		return "make bench-compare", ""
	}
	alone := ""
	if res.Only != "" {
		only += " -daemon " + string(res.Only)
		alone = fmt.Sprintf(", %s alone (no comparison)", res.Only)
	}
	return fmt.Sprintf("go run ./lab/cmd/benchcompare -n %s -reps %d%s", got, res.Reps, only),
		fmt.Sprintf("N = %s with %d repetitions%s; `make bench-compare` runs N = %s, distinct and shared, with %d, both daemons",
			got, res.Reps, alone, fullNs, fullReps)
}

// render writes the report from results saved with -json.
func render(f flags) error {
	b, err := os.ReadFile(f.from)
	if err != nil {
		return err
	}
	var res compare.Results
	if err := json.Unmarshal(b, &res); err != nil {
		return fmt.Errorf("%s: %w", f.from, err)
	}
	return writeOutputs(flags{out: f.out}, res)
}
