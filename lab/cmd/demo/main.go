// Command demo is `make demo`: it builds the lab programs, boots a VM with
// Debian's IPVS kernel (lab/vm), runs containerlab.yml in it with the lab
// runner, sends client traffic through the VIP and prints what a network
// engineer would look at: the router's ECMP route, each director's IPVS
// table and directorctl status, and how requests spread over directors and
// real servers. Then it kills a real server and a director while traffic
// flows and shows that it keeps flowing. It ends by itself (a few minutes)
// and leaves nothing behind.
//
//	go run ./lab/cmd/demo [-t containerlab.yml] [-timeout 12m]
//
// With -inside it is the part that runs in the VM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/anycast-director/director/lab/topology"
	"github.com/anycast-director/director/lab/vm"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("demo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	topo := fs.String("t", "", "topology file (default: containerlab.yml in the repository)")
	inside := fs.Bool("inside", false, "run the demo itself (inside the VM)")
	bin := fs.String("bin", "", "with -inside: folder of the lab programs")
	timeout := fs.Duration("timeout", 12*time.Minute, "limit for the whole run")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	if *inside {
		if err := demo(ctx, *topo, *bin, stdout); err != nil {
			fmt.Fprintf(stdout, "\ndemo: %v\n", err)
			return 1
		}
		return 0
	}
	return host(ctx, *topo, *timeout, stdout, stderr)
}

// host builds the programs and runs this command with -inside in the VM.
func host(ctx context.Context, topo string, timeout time.Duration, stdout, stderr io.Writer) int {
	start := time.Now()
	root, err := topology.ModuleRoot()
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	if topo == "" {
		topo = filepath.Join(root, "containerlab.yml")
	}
	if topo, err = filepath.Abs(topo); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	work, err := os.MkdirTemp("", "demo-")
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	defer os.RemoveAll(work)
	fmt.Fprintf(stdout, "demo: building directord, directorctl, labserver and labclient\n")
	bin := filepath.Join(work, "bin")
	if err := topology.Build(ctx, root, bin); err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	self, err := os.Executable()
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	fmt.Fprintf(stdout, "demo: booting a VM with Debian's kernel (IPVS); the lab runs inside it\n")
	res, err := vm.Run(ctx, vm.Options{
		Memory:  1536,
		CPUs:    2,
		Timeout: timeout,
		Dir:     root,
		Stdout:  stdout,
		Logger:  slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo})),
	}, []string{self, "-inside", "-bin", bin, "-t", topo, "-timeout", (timeout - time.Minute).String()})
	if err != nil {
		fmt.Fprintf(stderr, "demo: the VM failed: %v\n", err)
		if errors.Is(err, vm.ErrQEMUMissing) || errors.Is(err, vm.ErrAssets) {
			fmt.Fprintf(stderr, "demo: run bash scripts/deps.sh demo first\n")
		}
		return 3
	}
	fmt.Fprintf(stdout, "demo: finished in %s (kernel %s); the VM and the lab are gone\n", time.Since(start).Round(time.Second), res.KernelVersion)
	return res.ExitCode
}
