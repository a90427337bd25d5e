// Command e2e runs the end-to-end lab (`make e2e`): it builds the lab
// image's programs and the lab/e2e test binary on the host, runs the test in
// a VM with Debian's IPVS kernel (lab/vm), streams its output, and copies
// the RESULTS.md the test writes to lab/RESULTS.md.
//
//	go run ./lab/cmd/e2e [-run REGEXP] [-timeout 30m] [-results lab/RESULTS.md]
//
// Exit status: the test binary's (0 passed, 1 failed), 3 if the VM failed.
package main

import (
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
	"syscall"
	"time"

	"github.com/anycast-director/director/lab/compare"
	"github.com/anycast-director/director/lab/topology"
	"github.com/anycast-director/director/lab/vm"
)

const (
	exitFail = 1
	exitVM   = 3
	vmMemory = 1536 // MiB: nine nodes, three directord, FRR and the overlay
	vmCPUs   = 2
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("e2e", flag.ContinueOnError)
	fs.SetOutput(stderr)
	runRE := fs.String("run", "", "run only tests matching this regexp (-test.run)")
	timeout := fs.Duration("timeout", 30*time.Minute, "limit for the whole VM run")
	results := fs.String("results", "", "where to copy RESULTS.md (default lab/RESULTS.md in the repository; \"-\": nowhere)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	start := time.Now()
	root, err := topology.ModuleRoot()
	if err != nil {
		fmt.Fprintf(stderr, "e2e: %v\n", err)
		return exitFail
	}
	if *results == "" {
		*results = filepath.Join(root, "lab", "RESULTS.md")
	}
	work, err := os.MkdirTemp("", "e2e-")
	if err != nil {
		fmt.Fprintf(stderr, "e2e: %v\n", err)
		return exitFail
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "bin")
	if err := topology.Build(ctx, root, bin); err != nil {
		fmt.Fprintf(stderr, "e2e: build the lab programs: %v\n", err)
		return exitFail
	}
	upgrade, err := buildUpgrade(ctx, root, work)
	if err != nil {
		fmt.Fprintf(stderr, "e2e: %v\n", err)
		return exitFail
	}
	testBin := filepath.Join(work, "e2e.test")
	build := exec.CommandContext(ctx, "go", "test", "-c", "-tags", "vm", "-o", testBin, "./lab/e2e")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		fmt.Fprintf(stderr, "e2e: build the test: %v\n%s", err, out)
		return exitFail
	}
	fmt.Fprintf(stdout, "e2e: built in %s; booting the VM\n", time.Since(start).Round(time.Millisecond))

	out := filepath.Join(work, "out")
	argv := []string{testBin, "-test.v", "-test.timeout=" + (*timeout - time.Minute).String()}
	if *runRE != "" {
		argv = append(argv, "-test.run="+*runRE)
	}
	host := compare.HostInfo()
	machine := fmt.Sprintf("qemu with software emulation (TCG), %d vCPUs, %d MiB, on a host with %d cores of %s, load average %.1f at the start",
		vmCPUs, vmMemory, host.Cores, host.CPU, host.LoadBefore)
	load := sampleLoad(ctx, 10*time.Second)
	res, err := vm.Run(ctx, vm.Options{
		Memory:  vmMemory,
		CPUs:    vmCPUs,
		Timeout: *timeout,
		Dir:     filepath.Join(root, "lab", "e2e"),
		Env:     append(os.Environ(), "E2E_BIN="+bin, "E2E_UPGRADE_BIN="+upgrade, "E2E_MACHINE="+machine, "E2E_COMMIT="+compare.Commit(root)),
		OutDir:  out,
		Stdout:  stdout,
		Logger:  slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, argv)
	loadLine := load()
	fmt.Fprintf(stdout, "e2e: %s\n", loadLine)
	if data, rerr := os.ReadFile(filepath.Join(out, "RESULTS.md")); rerr == nil && *results != "-" {
		data = append(data, "\n"+loadLine+"\n"...)
		if werr := os.WriteFile(*results, data, 0o644); werr != nil {
			fmt.Fprintf(stderr, "e2e: %v\n", werr)
		} else {
			fmt.Fprintf(stdout, "e2e: wrote %s\n", *results)
		}
	}
	fmt.Fprintf(stdout, "e2e: kernel %s, VM boot %s, total %s\n", res.KernelVersion, res.Boot.Round(time.Millisecond), time.Since(start).Round(time.Second))
	if err != nil {
		fmt.Fprintf(stderr, "e2e: the VM failed: %v\n", err)
		if errors.Is(err, vm.ErrTimeout) {
			fmt.Fprintf(stderr, "e2e: raise -timeout, or look at the last scenario above\n")
		}
		return exitVM
	}
	if res.ExitCode != 0 {
		fmt.Fprintf(stdout, "e2e: FAIL (test exit status %d)\n", res.ExitCode)
		return exitFail
	}
	fmt.Fprintf(stdout, "e2e: PASS\n")
	return 0
}

// buildUpgrade builds the directord that the upgrade scenario installs: the
// same source stamped with another version, so the lab can tell which build
// runs.
func buildUpgrade(ctx context.Context, root, work string) (string, error) {
	out := filepath.Join(work, "upgrade", "directord")
	cmd := exec.CommandContext(ctx, "go", "build", "-ldflags",
		"-X github.com/anycast-director/director/internal/buildinfo.version=v0.0.0-e2e-upgrade", "-o", out, "./cmd/directord")
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build the upgrade's directord: %w\n%s", err, b)
	}
	return out, nil
}

// sampleLoad samples the host's 1-minute load average every period until
// the returned function is called, which says what it saw: the start's
// figure alone hid runs that other work on the machine slowed down.
func sampleLoad(ctx context.Context, period time.Duration) func() string {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan string, 1)
	go func() {
		var sum, peak float64
		n := 0
		add := func() {
			if l := compare.LoadAverage(); l >= 0 {
				sum, peak, n = sum+l, max(peak, l), n+1
			}
		}
		add()
		t := time.NewTicker(period)
		defer t.Stop()
		for {
			select {
			case <-t.C:
				add()
			case <-ctx.Done():
				add()
				if n == 0 {
					done <- "Host load average during the run: unknown."
					return
				}
				done <- fmt.Sprintf("Host load average (1 min) during the run, sampled every %s: mean %.1f, peak %.1f (%d samples). Figures from a run with a mean well above the core count are the machine's as much as directord's.", period, sum/float64(n), peak, n)
				return
			}
		}
	}()
	return func() string {
		cancel()
		return <-done
	}
}
