// Command labrun deploys a containerlab topology with the lab runner
// (network namespaces, no Docker), optionally runs one command on the host
// side while it is up, and removes everything when that command ends, after
// -for, or on SIGINT/SIGTERM:
//
//	labrun [-t containerlab.yml] [-bin DIR] [-for 10m] [-- CMD ARGS...]
//
// The command gets LAB_PREFIX (the namespace prefix: node NODE is network
// namespace ${LAB_PREFIX}NODE) in its environment. IPVS needs the VM's
// kernel, so on these machines run it through lab/vm:
//
//	go build -o /tmp/lab ./cmd/... ./lab/cmd/... &&
//	go run ./lab/vm/cmd/vmrun -- /tmp/lab/labrun -bin /tmp/lab -- sh -c 'ip netns exec ${LAB_PREFIX}router vtysh -c "show ip route"'
package main

import (
	"context"
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

	"github.com/anycast-director/director/lab/runner"
	"github.com/anycast-director/director/lab/topology"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("labrun", flag.ContinueOnError)
	fs.SetOutput(stderr)
	topo := fs.String("t", "containerlab.yml", "topology file")
	bin := fs.String("bin", "", "folder with the lab image's programs (default: the folder of labrun itself)")
	hold := fs.Duration("for", 10*time.Minute, "remove the lab after this long (without a command)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *bin == "" {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "labrun: %v\n", err)
			return 2
		}
		*bin = filepath.Dir(exe)
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	t, err := runner.Load(*topo)
	if err != nil {
		fmt.Fprintf(stderr, "labrun: %v\n", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	lab, err := runner.Deploy(ctx, t, runner.Options{Images: topology.Images(*bin), Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "labrun: %v\n", err)
		return 1
	}
	defer func() {
		if err := lab.Destroy(); err != nil {
			fmt.Fprintf(stderr, "labrun: cleanup: %v\n", err)
		}
	}()
	fmt.Fprintf(stdout, "lab %s is up; namespaces start with %s\n", t.Name, lab.Prefix())
	if fs.NArg() == 0 {
		select {
		case <-ctx.Done():
		case <-time.After(*hold):
		}
		return 0
	}
	cmd := exec.CommandContext(ctx, fs.Arg(0), fs.Args()[1:]...)
	cmd.Env = append(os.Environ(), "LAB_PREFIX="+lab.Prefix(), "LAB_STATE="+lab.StateDir())
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(stderr, "labrun: %v\n", err)
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		return 1
	}
	return 0
}
