package vm

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Run boots a VM, runs argv as root inside it and returns the program's
// output and exit status. A non-nil error means the VM could not run the
// program to the end (see the Err* values); the program's own failure is only
// Result.ExitCode. Result is filled as far as the run got, also on error.
func Run(ctx context.Context, o Options, argv []string) (Result, error) {
	start := time.Now()
	res := Result{ExitCode: -1}
	log := discardLogger(o.Logger)
	plan, err := planRun(o, argv)
	if err != nil {
		return res, err
	}
	qemu := o.QEMU
	if qemu == "" {
		qemu = "qemu-system-x86_64"
	}
	if qemu, err = exec.LookPath(qemu); err != nil {
		return res, fmt.Errorf("%w (%v)", ErrQEMUMissing, err)
	}
	if o.Assets.Logger == nil {
		o.Assets.Logger = log
	}
	assets, err := Prepare(ctx, o.Assets)
	if err != nil {
		return res, err
	}
	res.KernelVersion = assets.KernelVersion

	tmp, err := os.MkdirTemp("", "vmrun-")
	if err != nil {
		return res, fmt.Errorf("create run folder: %w", err)
	}
	defer os.RemoveAll(tmp)
	ctl := filepath.Join(tmp, "ctl")
	nonce, err := writeControl(ctl, plan)
	if err != nil {
		return res, err
	}
	sock := filepath.Join(tmp, "out.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		return res, fmt.Errorf("listen for the VM's output on %s: %w", sock, err)
	}
	defer ln.Close()

	args := qemuArgs(qemuConfig{
		Kernel: assets.Kernel, Initrd: assets.Initrd,
		Memory: plan.memory, CPUs: plan.cpus,
		CtlDir: ctl, OutSock: sock, Shares: plan.shares,
		Firmware: firmware(),
		LPJ:      hostLPJ(assets.HZ),
	})
	var outBuf bytes.Buffer
	var outMu sync.Mutex
	emit := func(p []byte) {
		outMu.Lock()
		outBuf.Write(p)
		outMu.Unlock()
		if o.Stdout != nil {
			o.Stdout.Write(p)
		}
	}
	var readyAt time.Time
	console := &consoleLog{onReady: func() { readyAt = time.Now() }}
	if o.Console != nil {
		console.live = func(p []byte) { o.Console.Write(p) }
	}
	var stderr bytes.Buffer
	cmd := exec.Command(qemu, args...)
	cmd.Stdin = nil
	cmd.Stdout = console
	cmd.Stderr = &stderr
	cmd.Dir = tmp
	// Pdeathsig: qemu dies with the caller even if the caller is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	cmd.WaitDelay = 5 * time.Second
	log.Debug("starting qemu", "args", strings.Join(args, " "))
	vmStart := time.Now()
	waitCh, err := startLocked(cmd)
	if err != nil {
		return res, fmt.Errorf("%w: start %s: %v", ErrBoot, qemu, err)
	}
	killed := false
	kill := func() {
		killed = true
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}

	outDone := make(chan int, 1)
	go func() { outDone <- pumpOutput(ln, nonce, emit) }()

	timer := time.NewTimer(plan.timeout)
	defer timer.Stop()
	var waitErr, stopErr error
	select {
	case waitErr = <-waitCh:
	case <-timer.C:
		kill()
		waitErr = <-waitCh
		stopErr = ErrTimeout
	case <-ctx.Done():
		kill()
		waitErr = <-waitCh
		stopErr = ctx.Err()
	}
	ln.Close() // unblocks Accept if qemu never connected
	endStatus := <-outDone

	res.Total = time.Since(start)
	if !readyAt.IsZero() {
		res.Boot = readyAt.Sub(vmStart)
	}
	outMu.Lock()
	res.Output = outBuf.Bytes()
	outMu.Unlock()
	res.Console = console.buf.Bytes()
	tail := console.tail(15)

	if stopErr != nil {
		stage := "the VM had not finished booting"
		if !readyAt.IsZero() {
			stage = fmt.Sprintf("the VM booted in %s and the program ran for %s", res.Boot.Round(time.Millisecond), time.Since(readyAt).Round(time.Millisecond))
		}
		if errors.Is(stopErr, ErrTimeout) {
			return res, fmt.Errorf("%w after %s (%s); qemu was killed; last console lines:\n%s", ErrTimeout, plan.timeout, stage, tail)
		}
		return res, fmt.Errorf("VM run cancelled (%s): %w", stage, stopErr)
	}
	if len(console.failLines) > 0 {
		reason := console.failLines[0]
		if data, err := os.ReadFile(filepath.Join(ctl, "fail")); err == nil {
			reason = strings.TrimSpace(string(data))
		}
		if m, ok := strings.CutPrefix(reason, "module: "); ok {
			return res, fmt.Errorf("%w: %s", ErrModule, m)
		}
		return res, fmt.Errorf("%w: %s; last console lines:\n%s", ErrBoot, reason, tail)
	}
	if data, err := os.ReadFile(filepath.Join(ctl, "exit")); err == nil {
		if st, err := strconv.Atoi(strings.TrimSpace(string(data))); err == nil {
			res.ExitCode = st
			if endStatus < 0 {
				log.Warn("the program's output may be incomplete: its end marker did not arrive")
			}
			return res, nil
		}
	}
	if endStatus >= 0 {
		res.ExitCode = endStatus
		return res, nil
	}
	why := "qemu exited"
	if waitErr != nil {
		why = fmt.Sprintf("qemu exited: %v", waitErr)
	}
	if killed {
		why = "qemu was killed"
	}
	return res, fmt.Errorf("%w: %s before the program's exit status arrived; qemu said: %q; last console lines:\n%s",
		ErrBoot, why, strings.TrimSpace(stderr.String()), tail)
}

// startLocked starts cmd from a goroutine locked to its OS thread and keeps
// it there until cmd exits. Pdeathsig fires when the forking thread ends, and
// the Go runtime ends a thread when a goroutine locked to it exits (netns
// code does that): without the lock, such a goroutine scheduled later on the
// forking thread would kill qemu mid-run.
func startLocked(cmd *exec.Cmd) (<-chan error, error) {
	started := make(chan error, 1)
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if err := cmd.Start(); err != nil {
			started <- err
			return
		}
		started <- nil
		done <- cmd.Wait()
	}()
	if err := <-started; err != nil {
		return nil, err
	}
	return done, nil
}

// pumpOutput accepts the output port's connection, streams it through emit
// and acknowledges the end marker so that /init powers off only after the
// host has every byte. It returns the status in the marker, or -1.
func pumpOutput(ln net.Listener, nonce string, emit func([]byte)) int {
	conn, err := ln.Accept()
	if err != nil {
		return -1
	}
	defer conn.Close()
	status := -1
	sc := newEndScanner(nonce, emit, func(st int) {
		status = st
		conn.Write([]byte("ack\n"))
	})
	io.Copy(sc, conn)
	sc.Flush()
	return status
}

// runPlan is the validated, defaulted form of Options.
type runPlan struct {
	memory, cpus int
	timeout      time.Duration
	script       string
	shares       []Share
}

// planRun validates the request before anything slow happens.
func planRun(o Options, argv []string) (runPlan, error) {
	p := runPlan{memory: o.Memory, cpus: o.CPUs, timeout: o.Timeout}
	if p.memory <= 0 {
		p.memory = defaultMemory
	}
	if p.cpus <= 0 {
		p.cpus = defaultCPUs
	}
	if p.timeout <= 0 {
		p.timeout = defaultTimeout
	}
	if len(argv) == 0 {
		return p, fmt.Errorf("%w: no command given", ErrInvalid)
	}
	for _, s := range o.Shares {
		if s.Guest == "" {
			s.Guest = s.Host
		}
		p.shares = append(p.shares, s)
	}
	if o.OutDir != "" {
		abs, err := filepath.Abs(o.OutDir)
		if err != nil {
			return p, fmt.Errorf("%w: output folder: %v", ErrInvalid, err)
		}
		if err := os.MkdirAll(abs, 0o755); err != nil {
			return p, fmt.Errorf("%w: create output folder: %v", ErrInvalid, err)
		}
		p.shares = append(p.shares, Share{Host: abs, Guest: abs})
	}
	for _, s := range p.shares {
		if err := checkShare(s); err != nil {
			return p, err
		}
	}
	dir := o.Dir
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return p, fmt.Errorf("%w: working directory: %v", ErrInvalid, err)
		}
		dir = wd
	}
	if !filepath.IsAbs(dir) {
		return p, fmt.Errorf("%w: working directory %q is not absolute", ErrInvalid, dir)
	}
	env := o.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(append([]string(nil), env...), "VM_GUEST=1")
	if o.OutDir != "" {
		env = append(env, "VM_OUTDIR="+p.shares[len(p.shares)-1].Guest)
	}
	env = mergeEnv(env, map[string]string{"PATH": debianRootPath, "HOME": "/root", "TERM": "dumb"})
	if !guestOnly(dir, p.shares) {
		if st, err := os.Stat(dir); err != nil || !st.IsDir() {
			return p, fmt.Errorf("%w: working directory %s does not exist (the guest sees the host's files)", ErrInvalid, dir)
		}
		if err := checkCommand(argv[0], dir, env, p.shares); err != nil {
			return p, err
		}
	}
	script, err := commandScript(dir, env, argv)
	if err != nil {
		return p, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	p.script = script
	return p, nil
}

func checkShare(s Share) error {
	if !filepath.IsAbs(s.Host) || !filepath.IsAbs(s.Guest) {
		return fmt.Errorf("%w: share %s -> %s: paths must be absolute", ErrInvalid, s.Host, s.Guest)
	}
	if strings.ContainsAny(s.Guest, " \t\n") {
		return fmt.Errorf("%w: share guest path %q contains white space", ErrInvalid, s.Guest)
	}
	if filepath.Clean(s.Guest) == "/" {
		return fmt.Errorf("%w: a share cannot replace the guest's root", ErrInvalid)
	}
	if st, err := os.Stat(s.Host); err != nil || !st.IsDir() {
		return fmt.Errorf("%w: share %s is not an existing folder", ErrInvalid, s.Host)
	}
	return nil
}

// guestOnly tells whether p exists only inside the guest, so the host cannot
// check it: under a share's guest path or in the guest's own /run, /proc,
// /sys or /dev.
func guestOnly(p string, shares []Share) bool {
	for _, root := range []string{"/run", "/proc", "/sys", "/dev"} {
		if within(p, root) {
			return true
		}
	}
	for _, s := range shares {
		if within(p, s.Guest) {
			return true
		}
	}
	return false
}

func within(p, root string) bool {
	rel, err := filepath.Rel(root, p)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// checkCommand fails fast, before a boot, when the program does not exist:
// the guest runs the host's files, so the host can look it up.
func checkCommand(name, dir string, env []string, shares []Share) error {
	var candidates []string
	path := envValue(env, "PATH")
	if strings.Contains(name, "/") {
		p := name
		if !filepath.IsAbs(p) {
			p = filepath.Join(dir, p)
		}
		if guestOnly(p, shares) {
			return nil
		}
		candidates = []string{p}
	} else {
		for _, d := range filepath.SplitList(path) {
			if d == "" {
				d = "."
			}
			if !filepath.IsAbs(d) {
				d = filepath.Join(dir, d)
			}
			if guestOnly(d, shares) {
				return nil // the program may be there; only the guest knows
			}
			candidates = append(candidates, filepath.Join(d, name))
		}
	}
	for _, c := range candidates {
		if st, err := os.Stat(c); err == nil && !st.IsDir() && st.Mode()&0o111 != 0 {
			return nil
		}
	}
	return fmt.Errorf("%w: command %q not found or not executable (PATH=%s)", ErrInvalid, name, path)
}

func envValue(env []string, key string) string {
	v := ""
	for _, kv := range env {
		if k, val, ok := strings.Cut(kv, "="); ok && k == key {
			v = val
		}
	}
	return v
}

// writeControl fills the control folder that /init reads and returns the
// run's nonce, which keeps the program from faking the end marker by accident.
func writeControl(ctl string, p runPlan) (string, error) {
	if err := os.Mkdir(ctl, 0o755); err != nil {
		return "", fmt.Errorf("create control folder: %w", err)
	}
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	nonce := hex.EncodeToString(b)
	files := map[string]string{
		"cmd.sh": p.script, "nonce": nonce + "\n", "mounts": mountsFile(p.shares),
		"runskel": runSkeleton(readRunDir("/run")),
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(ctl, name), []byte(content), 0o644); err != nil {
			return "", fmt.Errorf("write control file %s: %w", name, err)
		}
	}
	return nonce, nil
}

// firmware picks the BIOS image. qemu's default SeaBIOS works everywhere;
// with a PVH kernel it is only on screen for a moment.
func firmware() string { return "" }

func hostLPJ(hz int) int {
	cpuinfo, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return 0
	}
	return presetLPJ(cpuinfo, hz)
}

// readRunDir reads the first level of the host's /run for runSkeleton.
func readRunDir(dir string) []runEntry {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil
	}
	var out []runEntry
	for _, de := range des {
		p := filepath.Join(dir, de.Name())
		fi, err := os.Lstat(p)
		if err != nil {
			continue
		}
		e := runEntry{Name: de.Name()}
		switch {
		case fi.Mode()&os.ModeSymlink != 0:
			if e.Target, err = os.Readlink(p); err != nil {
				continue
			}
		case fi.IsDir():
			st, ok := fi.Sys().(*syscall.Stat_t)
			if !ok {
				continue
			}
			e.Dir, e.UID, e.GID, e.Mode = true, st.Uid, st.Gid, st.Mode&0o7777
		default:
			continue
		}
		out = append(out, e)
	}
	return out
}
