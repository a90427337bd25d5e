// Package vm runs a program as root inside a throwaway qemu VM that boots
// Debian's kernel, because the development machines' own kernel has no IPVS.
//
// The guest sees the host's whole filesystem through 9p, read-only, under a
// tmpfs overlay: the host's binaries, libraries and FRR run unchanged, any
// write stays in the VM, and fresh proc, sys, dev, run (with /run/netns) are
// mounted. Shares make host folders writable from the guest to pass files in
// and collect results. The kernel package comes from Debian's registry and is
// cached under lab/.cache/vm by kernel version; see Prepare.
//
// Run returns an error only when the VM could not run the program (qemu
// missing, kernel download failed, a module failed to load, timeout); the
// program's own failure is Result.ExitCode.
package vm

import (
	"errors"
	"io"
	"log/slog"
	"time"
)

// Errors that tell why a VM could not run the program; match with errors.Is.
var (
	// ErrQEMUMissing means qemu-system-x86_64 is not installed.
	ErrQEMUMissing = errors.New("qemu-system-x86_64 not found: install qemu-system-x86 (bash scripts/deps.sh)")
	// ErrAssets means the kernel package could not be fetched or the initramfs not built.
	ErrAssets = errors.New("cannot prepare the VM kernel and initramfs")
	// ErrModule means a required kernel module failed to load in the guest.
	ErrModule = errors.New("kernel module failed to load in the VM")
	// ErrBoot means the VM stopped before it reported the program's exit status.
	ErrBoot = errors.New("VM failed to boot or to run the program")
	// ErrTimeout means the run exceeded Options.Timeout and qemu was killed.
	ErrTimeout = errors.New("VM run timed out")
	// ErrInvalid means the options or the command cannot work.
	ErrInvalid = errors.New("invalid VM run request")
)

// Share makes a host folder visible at Guest inside the VM, writable unless
// ReadOnly, so that callers can pass input files and collect results.
type Share struct {
	Host     string // absolute host path; must exist
	Guest    string // absolute guest path; empty means the same as Host
	ReadOnly bool
}

// Options describe one run. The zero value is usable: 1 GiB, 2 CPUs, 10
// minutes, the caller's environment and working directory.
type Options struct {
	// Memory is the guest RAM in MiB (default 1024). The overlay that makes
	// the root writable lives in it.
	Memory int
	// CPUs is the number of emulated CPUs (default 2).
	CPUs int
	// Timeout bounds boot plus program; qemu is killed after it (default 10m).
	Timeout time.Duration
	// Env is the program's environment as KEY=VALUE; nil means the caller's
	// (os.Environ()). PATH, HOME and TERM get Debian root defaults if unset.
	Env []string
	// Dir is the program's working directory (default: the caller's).
	Dir string
	// Shares are extra host folders mounted in the guest.
	Shares []Share
	// OutDir, if set, is created on the host and shared writable at the same
	// path in the guest; the program finds it in $VM_OUTDIR.
	OutDir string
	// Stdout receives the program's combined stdout and stderr live; the same
	// bytes are in Result.Output.
	Stdout io.Writer
	// Console receives the guest's kernel console live (for debugging boots).
	Console io.Writer
	// Assets choose the kernel, modules and cache folder; see Prepare.
	Assets AssetOptions
	// QEMU is the emulator binary (default qemu-system-x86_64 from PATH).
	QEMU string
	// Logger gets progress at Info and details at Debug (default: discard).
	Logger *slog.Logger
}

// Result is what came back from the VM.
type Result struct {
	// Output is the program's combined stdout and stderr.
	Output []byte
	// ExitCode is the program's exit status (128+N if killed by signal N).
	ExitCode int
	// Boot is the time from starting qemu to starting the program, Total the
	// time of the whole run including asset preparation.
	Boot, Total time.Duration
	// Console is the guest's kernel console, for diagnosing failures.
	Console []byte
	// KernelVersion is the guest kernel's version, such as 6.1.0-56-amd64.
	KernelVersion string
}

const (
	defaultMemory  = 1024
	defaultCPUs    = 2
	defaultTimeout = 10 * time.Minute
	// debianRootPath is Debian's PATH for root: the guest runs the host's
	// Debian userspace, where ipvsadm and ip live in /usr/sbin.
	debianRootPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
)

func discardLogger(l *slog.Logger) *slog.Logger {
	if l != nil {
		return l
	}
	return slog.New(slog.DiscardHandler)
}
