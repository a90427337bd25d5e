// Command vmrun runs one program as root inside a throwaway VM with Debian's
// IPVS-capable kernel (see lab/vm) and exits with the program's status.
//
//	go run ./lab/vm/cmd/vmrun [-timeout 5m] [-out DIR] [-share HOST[:GUEST]] -- CMD ARGS...
//
// The program sees the host's files (read-only, with writes kept in the VM),
// this process's environment and working directory. Exit status 125 means
// the VM itself failed (the message says why).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/anycast-director/director/lab/vm"
)

// vmFailure is the exit status when the VM, not the program, failed.
const vmFailure = 125

type shareFlags []vm.Share

func (s *shareFlags) String() string { return fmt.Sprint(*s) }

func (s *shareFlags) Set(v string) error {
	ro := strings.HasSuffix(v, ":ro")
	v = strings.TrimSuffix(v, ":ro")
	host, guest, _ := strings.Cut(v, ":")
	*s = append(*s, vm.Share{Host: host, Guest: guest, ReadOnly: ro})
	return nil
}

func main() {
	os.Exit(run())
}

func run() int {
	var (
		opts    vm.Options
		shares  shareFlags
		verbose = flag.Bool("v", false, "log progress and show the guest console on stderr")
		stats   = flag.Bool("stats", false, "print boot and total time to stderr")
	)
	flag.DurationVar(&opts.Timeout, "timeout", 10*time.Minute, "kill the VM after this long")
	flag.IntVar(&opts.Memory, "memory", 1024, "guest RAM in MiB")
	flag.IntVar(&opts.CPUs, "cpus", 2, "guest CPUs")
	flag.StringVar(&opts.OutDir, "out", "", "host folder shared writable at the same path ($VM_OUTDIR in the guest)")
	flag.StringVar(&opts.Dir, "C", "", "working directory in the guest (default: the current one)")
	flag.Var(&shares, "share", "HOST[:GUEST][:ro] folder to mount in the guest (repeatable)")
	flag.StringVar(&opts.Assets.KernelPackage, "kernel-package", "", "pin the kernel package (default: what linux-image-amd64 depends on)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: vmrun [flags] -- CMD [ARGS...]\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		return 2
	}
	opts.Shares = shares
	opts.Stdout = os.Stdout
	if *verbose {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, nil))
		opts.Console = os.Stderr
	} else {
		opts.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	res, err := vm.Run(ctx, opts, flag.Args())
	if *stats {
		fmt.Fprintf(os.Stderr, "vmrun: kernel %s, boot %s, total %s, exit status %d\n",
			res.KernelVersion, res.Boot.Round(time.Millisecond), res.Total.Round(time.Millisecond), res.ExitCode)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vmrun: %v\n", err)
		if errors.Is(err, vm.ErrInvalid) {
			return 2
		}
		return vmFailure
	}
	return res.ExitCode
}
