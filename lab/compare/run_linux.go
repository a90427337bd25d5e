package compare

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Options describe a comparison run inside the VM (as root).
type Options struct {
	// Scenarios run in order; each with every daemon Reps times.
	Scenarios []Scenario
	Reps      int
	// Only, when set, runs that daemon alone (an investigation, not a
	// comparison: the report has no ratios).
	Only     Daemon
	Timing   Timing
	Binaries Binaries
	// Dir holds the daemons' files; Prefix names the namespaces.
	Dir, Prefix string
	// Log receives progress (nil: discarded).
	Log io.Writer
	// OutDir, when set, receives each run's daemon log and, with Profile,
	// a perf profile of each daemon's steady window.
	OutDir  string
	Profile bool
	// Progress, when set, gets the results so far after every run, so a
	// comparison cut short still reports what it measured.
	Progress func(Results)
}

// Measure measures both daemons in every scenario. Repetitions alternate which
// daemon goes first. It returns an error only when the setup fails; a run
// that fails keeps its error in Run.Errors.
func Measure(ctx context.Context, o Options) (Results, error) {
	res := Results{Started: time.Now(), Scenarios: o.Scenarios, Reps: o.Reps, Only: o.Only, TCG: true,
		GuestCPUs: runtime.NumCPU(), GuestKernel: kernelRelease(), Keepalived: keepalivedVersion(o.Binaries.Keepalived)}
	logw := o.Log
	if logw == nil {
		logw = io.Discard
	}
	err := raiseFileLimit()
	if err != nil {
		return res, err
	}
	if o.Binaries, err = copyBinaries(o.Binaries, o.Dir); err != nil {
		return res, err
	}
	// The counter's kprobes stay armed until the VM ends (newWriteCounter).
	writes, err := newWriteCounter(o.Prefix)
	if err != nil {
		return res, err
	}
	progress := func(r Run) {
		res.Runs = append(res.Runs, r)
		res.Finished = time.Now()
		if o.Progress != nil {
			o.Progress(res)
		}
	}
	for _, s := range o.Scenarios {
		if err := runScenario(ctx, o, s, writes, logw, progress); err != nil {
			return res, fmt.Errorf("%s: %w", s.Name(), err)
		}
	}
	res.Finished = time.Now()
	return res, nil
}

// runScenario builds the topology for s and runs every repetition.
func runScenario(ctx context.Context, o Options, s Scenario, writes *writeCounter, logw io.Writer, done func(Run)) error {
	topo, err := newTopology(ctx, o.Prefix, s.RealServers)
	if err != nil {
		return err
	}
	defer topo.close()
	if err := topo.listen(s.Ports()); err != nil {
		return err
	}
	v, err := newView(s, topo.director)
	if err != nil {
		return err
	}
	defer v.close()
	r := &runner{s: s, t: o.Timing, bins: o.Binaries, topo: topo, view: v, writes: writes, dir: o.Dir,
		outDir: o.OutDir, profile: o.Profile}
	for rep := range o.Reps {
		order := []Daemon{Keepalived, Directord}
		if rep%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		if o.Only != "" {
			order = []Daemon{o.Only}
		}
		for _, d := range order {
			fmt.Fprintf(logw, "compare: %s rep %d: %s\n", s.Name(), rep+1, d)
			run := r.measure(ctx, d, rep)
			fmt.Fprintf(logw, "compare: %s rep %d: %s: %s\n", s.Name(), rep+1, d, summary(run))
			done(run)
			if err := ctx.Err(); err != nil {
				return err
			}
			// A failed run may leave real server 0 down.
			if err := topo.setUp(ctx, 0, true); err != nil {
				return err
			}
		}
	}
	return flushIPVS(ctx, topo.director)
}

// summary is a one-line account of a run for the progress log.
func summary(r Run) string {
	s := fmt.Sprintf("in IPVS %.2fs settled %.2fs (%s); %.0f/%.0f probes/s, %.3f ms CPU/probe (%.0f%%), %.1f MiB; detect %.2fs (%s) recover %.2fs (%s); reload %.2fs (%s); stop %.2fs",
		r.StartInIPVS, r.StartSettled, r.StartWrites, r.ProbeRate, r.Demanded, r.CPUPerProbe(), r.CPUPercent(), float64(r.RSS)/(1<<20),
		r.Detect, r.DetectWrites, r.Recover, r.RecoverWrites, r.Reload, r.ReloadWrites, r.Stop)
	if r.SteadyWrites.Commands > 0 {
		s += fmt.Sprintf("; STEADY WRITES %s", r.SteadyWrites)
	}
	if len(r.Errors) > 0 {
		s += "; ERRORS: " + strings.Join(r.Errors, "; ")
	}
	return s
}

// copyBinaries copies both programs into dir, so that neither is paged in
// from the host over 9p while it is measured (the guest's writable root is
// in memory, as a program on a running host is in the page cache).
func copyBinaries(b Binaries, dir string) (Binaries, error) {
	bin := filepath.Join(dir, "bin")
	if err := os.MkdirAll(bin, 0o755); err != nil {
		return b, err
	}
	out := Binaries{Directord: filepath.Join(bin, "directord"), Keepalived: filepath.Join(bin, "keepalived")}
	for from, to := range map[string]string{b.Directord: out.Directord, b.Keepalived: out.Keepalived} {
		data, err := os.ReadFile(from)
		if err != nil {
			return b, fmt.Errorf("copy %s: %w", from, err)
		}
		if err := os.WriteFile(to, data, 0o755); err != nil {
			return b, fmt.Errorf("copy %s: %w", from, err)
		}
	}
	return out, nil
}

// raiseFileLimit lets the listeners (one per target: 10,000 at N=1,000) and
// the daemons, which inherit it, open enough descriptors.
func raiseFileLimit() error {
	lim := unix.Rlimit{Cur: 1 << 18, Max: 1 << 18}
	if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &lim); err != nil {
		return fmt.Errorf("raise the open-files limit to %d: %w", lim.Max, err)
	}
	return nil
}

// kernelRelease is uname -r.
func kernelRelease() string {
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		return "unknown"
	}
	return unix.ByteSliceToString(u.Release[:])
}

// keepalivedVersion is the first line of keepalived --version.
func keepalivedVersion(bin string) string {
	out, err := exec.Command(bin, "--version").CombinedOutput()
	first, _, _ := strings.Cut(string(out), "\n")
	if err != nil && first == "" {
		return "unknown: " + err.Error()
	}
	return strings.TrimSpace(first)
}

// Check reports what is missing to run the comparison here.
func Check(b Binaries) error {
	var errs []error
	for _, p := range []string{b.Directord, b.Keepalived} {
		if _, err := os.Stat(p); err != nil {
			errs = append(errs, err)
		}
	}
	if _, err := exec.LookPath("ipvsadm"); err != nil {
		errs = append(errs, fmt.Errorf("ipvsadm: %w (bash scripts/deps.sh installs it)", err))
	}
	return errors.Join(errs...)
}
