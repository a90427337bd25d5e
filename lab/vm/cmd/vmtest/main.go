// Command vmtest compiles Go test binaries on the host and runs them as root
// inside one throwaway VM with Debian's IPVS-capable kernel (see lab/vm):
//
//	go run ./lab/vm/cmd/vmtest [-tags vm] [-run RE] [-bench RE] [-timeout 15m] [-v] PKG...
//
// Each binary runs with -test.v in its package folder, so testdata works. It
// exits 0 only if every binary passed and at least one test or benchmark ran
// (a run that runs nothing proves nothing; -allow-empty accepts it), 1 when
// tests failed or could not be built, 2 on bad usage, 3 when the VM failed.
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anycast-director/director/lab/vm"
)

const (
	exitFail  = 1
	exitUsage = 2
	exitVM    = 3
)

// config is the parsed command line.
type config struct {
	tags, run, skip, bench, benchtime string
	count                             int
	timeout                           time.Duration
	verbose, allowEmpty, short        bool
	benchmem, failfast                bool
	memory, cpus                      int
	pkgs                              []string
}

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func parseFlags(args []string, stderr io.Writer) (config, error) {
	var c config
	fs := flag.NewFlagSet("vmtest", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&c.tags, "tags", "vm", "build tags for go test -c")
	fs.StringVar(&c.run, "run", "", "run only tests matching this regexp (-test.run)")
	fs.StringVar(&c.skip, "skip", "", "skip tests matching this regexp (-test.skip)")
	fs.StringVar(&c.bench, "bench", "", "run benchmarks matching this regexp (-test.bench)")
	fs.StringVar(&c.benchtime, "benchtime", "", "-test.benchtime")
	fs.BoolVar(&c.benchmem, "benchmem", false, "-test.benchmem")
	fs.IntVar(&c.count, "count", 0, "-test.count (0: the default)")
	fs.BoolVar(&c.short, "short", false, "-test.short")
	fs.BoolVar(&c.failfast, "failfast", false, "-test.failfast")
	fs.DurationVar(&c.timeout, "timeout", 15*time.Minute, "limit for the whole VM run; each binary gets -test.timeout a little below it")
	fs.BoolVar(&c.verbose, "v", false, "stream every test's output live (otherwise only failing packages' output is shown)")
	fs.BoolVar(&c.allowEmpty, "allow-empty", false, "succeed even if no test ran")
	fs.IntVar(&c.memory, "memory", 1024, "guest RAM in MiB")
	fs.IntVar(&c.cpus, "cpus", 2, "guest CPUs")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: vmtest [flags] PKG...\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	c.pkgs = fs.Args()
	if len(c.pkgs) == 0 {
		fs.Usage()
		return c, errors.New("no packages given")
	}
	return c, nil
}

// testFlags are the flags every test binary gets.
func (c config) testFlags() []string {
	f := []string{"-test.v=true", "-test.paniconexit0"}
	if t := binaryTimeout(c.timeout); t > 0 {
		f = append(f, "-test.timeout="+t.String())
	}
	add := func(name, v string) {
		if v != "" {
			f = append(f, "-test."+name+"="+v)
		}
	}
	add("run", c.run)
	add("skip", c.skip)
	add("bench", c.bench)
	add("benchtime", c.benchtime)
	if c.count > 0 {
		add("count", strconv.Itoa(c.count))
	}
	for name, on := range map[string]bool{"benchmem": c.benchmem, "short": c.short, "failfast": c.failfast} {
		if on {
			f = append(f, "-test."+name+"=true")
		}
	}
	return f
}

// binaryTimeout leaves the test binary time to print its panic and stack
// before the VM is killed.
func binaryTimeout(total time.Duration) time.Duration {
	switch {
	case total > 2*time.Minute:
		return total - time.Minute
	case total > 20*time.Second:
		return total - 10*time.Second
	}
	return 0
}

// testPkg is one package to test.
type testPkg struct {
	ImportPath, Dir string
	HasTests        bool
	Binary          string
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()

	pkgs, err := listPackages(ctx, c.tags, c.pkgs)
	if err != nil {
		fmt.Fprintf(stderr, "vmtest: %v\n", err)
		return exitFail
	}
	work, err := os.MkdirTemp("", "vmtest-")
	if err != nil {
		fmt.Fprintf(stderr, "vmtest: %v\n", err)
		return exitFail
	}
	defer os.RemoveAll(work)

	var toRun []testPkg
	for i, p := range pkgs {
		if !p.HasTests {
			fmt.Fprintf(stdout, "?   \t%s\t[no test files]\n", p.ImportPath)
			continue
		}
		p.Binary = filepath.Join(work, fmt.Sprintf("%03d-%s.test", i, filepath.Base(p.ImportPath)))
		cmd := exec.CommandContext(ctx, "go", "test", "-c", "-tags", c.tags, "-o", p.Binary, p.ImportPath)
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			fmt.Fprintf(stdout, "%sFAIL\t%s [build failed]\n", out.String(), p.ImportPath)
			return exitFail
		}
		if _, err := os.Stat(p.Binary); err != nil { // no test files under these tags
			fmt.Fprintf(stdout, "?   \t%s\t[no test files]\n", p.ImportPath)
			continue
		}
		toRun = append(toRun, p)
	}
	built := time.Since(start)
	if len(toRun) == 0 {
		if c.allowEmpty {
			fmt.Fprintf(stdout, "vmtest: no package has test files\n")
			return 0
		}
		fmt.Fprintf(stderr, "vmtest: no package in %s has test files under tags %q: nothing would be proven (use -allow-empty to accept)\n", strings.Join(c.pkgs, " "), c.tags)
		return exitFail
	}

	script := driverScript(toRun, c.testFlags(), work)
	scriptPath := filepath.Join(work, "run.sh")
	if err := os.WriteFile(scriptPath, []byte(script), 0o755); err != nil {
		fmt.Fprintf(stderr, "vmtest: %v\n", err)
		return exitFail
	}
	names := make([]string, len(toRun))
	for i, p := range toRun {
		names[i] = p.ImportPath
	}
	var live io.Writer
	if c.verbose {
		live = stdout
	}
	parser := newStreamParser(names, live)
	// Each package's line appears as soon as it ends: the driver writes the
	// status file through the 9p share before printing the end marker.
	parser.onEnd = func(i int, r *pkgResult) { printPackage(stdout, c.verbose, r, readStatus(statusFile(work, i))) }
	opts := vm.Options{
		Memory:  c.memory,
		CPUs:    c.cpus,
		Timeout: c.timeout,
		Dir:     "/",
		OutDir:  work,
		Stdout:  parser,
		Logger:  slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}
	res, runErr := vm.Run(ctx, opts, []string{"/bin/sh", scriptPath})
	parser.Flush()
	return report(stdout, stderr, c, parser, work, res, runErr, built, time.Since(start))
}

// report prints go test style lines and the totals and picks the exit status.
func report(stdout, stderr io.Writer, c config, p *streamParser, work string,
	res vm.Result, runErr error, built, total time.Duration) int {
	code := 0
	var passed, failed, skipped, ran int
	for i, r := range p.pkgs {
		passed, failed, skipped, ran = passed+r.Passed, failed+r.Failed, skipped+r.Skipped, ran+r.Ran()
		if !r.Reported {
			printPackage(stdout, c.verbose, r, readStatus(statusFile(work, i)))
		}
		if r.Status != 0 {
			code = exitFail
		}
	}
	if p.stray.Len() > 0 && (runErr != nil || code != 0) {
		fmt.Fprintf(stdout, "vmtest: output outside the test binaries:\n%s", p.stray.String())
	}
	fmt.Fprintf(stdout, "vmtest: kernel %s, build %s, VM boot %s, total %s\n",
		res.KernelVersion, built.Round(time.Millisecond), res.Boot.Round(time.Millisecond), total.Round(time.Millisecond))
	fmt.Fprintf(stdout, "vmtest: %d passed, %d failed, %d skipped\n", passed, failed, skipped)
	if runErr != nil {
		fmt.Fprintf(stderr, "vmtest: the VM failed: %v\n", runErr)
		printConsole(stderr, res.Console)
		return exitVM
	}
	if res.ExitCode != 0 && code == 0 {
		fmt.Fprintf(stderr, "vmtest: the driver script exited with status %d\n", res.ExitCode)
		code = exitFail
	}
	if code == 0 && ran == 0 && !c.allowEmpty {
		fmt.Fprintf(stderr, "vmtest: no test or benchmark ran (all skipped or filtered out): nothing was proven; use -allow-empty to accept\n")
		code = exitFail
	}
	return code
}

// printConsole prints the guest's whole console (kernel messages) after a
// VM failure. The error shows only its last lines; a hung guest's first
// warning (a soft lockup's first trace, say) scrolls out of those, and it is
// the one that says what went wrong.
func printConsole(w io.Writer, console []byte) {
	if len(console) == 0 {
		return
	}
	fmt.Fprintf(w, "vmtest: the VM's whole console (%d bytes) follows, up to the line %q\n", len(console), consoleEnd)
	w.Write(console)
	if console[len(console)-1] != '\n' {
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, consoleEnd)
}

// consoleEnd ends the console printConsole prints.
const consoleEnd = "vmtest: end of the VM's console"

// printPackage prints a package's go-test-style line (after its output if it
// failed and the output was not streamed) and records its status.
func printPackage(w io.Writer, verbose bool, r *pkgResult, status int) {
	r.Status, r.Reported = status, true
	elapsed := r.Elapsed.Round(10 * time.Millisecond)
	switch {
	case status == 0 && r.Ran() == 0:
		fmt.Fprintf(w, "ok  \t%s\t%s [no tests to run]\n", r.ImportPath, elapsed)
	case status == 0:
		fmt.Fprintf(w, "ok  \t%s\t%s (%d passed, %d skipped, %d benchmarks)\n", r.ImportPath, elapsed, r.Passed, r.Skipped, r.Benchmarks)
	default:
		if !verbose {
			w.Write(r.Output.Bytes())
		}
		why := fmt.Sprintf("exit status %d", status)
		if status < 0 {
			why = "did not finish"
		}
		fmt.Fprintf(w, "FAIL\t%s\t%s (%s)\n", r.ImportPath, elapsed, why)
	}
}

func statusFile(work string, i int) string { return filepath.Join(work, fmt.Sprintf("%03d.rc", i)) }

// readStatus reads a status file the driver wrote; -1 if the binary never finished.
func readStatus(p string) int {
	data, err := os.ReadFile(p)
	if err != nil {
		return -1
	}
	st, err := strconv.Atoi(strings.TrimSpace(string(data)))
	if err != nil {
		return -1
	}
	return st
}

// listPackages expands the patterns with go list under the given tags.
func listPackages(ctx context.Context, tags string, patterns []string) ([]testPkg, error) {
	args := append([]string{"list", "-tags", tags, "-f", "{{.ImportPath}}\t{{.Dir}}\t{{len .TestGoFiles}}\t{{len .XTestGoFiles}}"}, patterns...)
	cmd := exec.CommandContext(ctx, "go", args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go list %s: %v: %s", strings.Join(patterns, " "), err, strings.TrimSpace(stderr.String()))
	}
	return parseList(string(out))
}

func parseList(out string) ([]testPkg, error) {
	var pkgs []testPkg
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		f := strings.Split(line, "\t")
		if len(f) != 4 {
			return nil, fmt.Errorf("unexpected go list line %q", line)
		}
		pkgs = append(pkgs, testPkg{ImportPath: f[0], Dir: f[1], HasTests: f[2] != "0" || f[3] != "0"})
	}
	return pkgs, nil
}

// driverScript runs every binary in its package folder between markers and
// writes each exit status to <work>/<index>.rc, read back on the host.
func driverScript(pkgs []testPkg, flags []string, work string) string {
	var b strings.Builder
	b.WriteString("#!/bin/sh\n# generated by vmtest: runs each test binary in its package folder\n")
	for i, p := range pkgs {
		fmt.Fprintf(&b, "echo '%s%d'\n", markBegin, i)
		fmt.Fprintf(&b, "(cd %s && exec %s", quote(p.Dir), quote(p.Binary))
		for _, f := range flags {
			b.WriteString(" " + quote(f))
		}
		b.WriteString(")\n")
		fmt.Fprintf(&b, "echo $? > %s\n", quote(statusFile(work, i)))
		fmt.Fprintf(&b, "echo '%s%d'\n", markEnd, i)
	}
	return b.String()
}

func quote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
