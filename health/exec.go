package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"time"
)

const (
	// maxExecOutput bounds the output an exec check keeps for LastError.
	maxExecOutput = 512
	// execOutputWait is how long to wait for the output pipe to close once
	// the probe's processes were killed.
	execOutputWait = 200 * time.Millisecond
)

// execChecker runs exec checks, each probe's processes contained in a jail.
type execChecker struct {
	jail *jail
}

// newExecChecker returns an exec checker whose jail logs to log.
func newExecChecker(log *slog.Logger) *execChecker { return &execChecker{jail: newJail(log)} }

// Close kills whatever any probe left running and removes the jail's cgroup.
// The scheduler calls it when it stops.
func (x *execChecker) Close() error { return x.jail.Close() }

// Check runs Spec.Command the way keepalived's MISC_CHECK does: exit status
// 0 passes, anything else fails. The target is in the environment as
// DIRECTOR_TARGET_ADDR and DIRECTOR_TARGET_PORT. Everything the command
// starts (background children, setsid'd or double-forked ones included) is
// killed when the probe ends, by exit or at the deadline: see jail.
func (x *execChecker) Check(ctx context.Context, t Target) error {
	ctx, cancel := probeContext(ctx, t)
	defer cancel()
	argv := t.Spec.Command
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("exec check has no command; set the check's command")
	}
	cell, err := x.jail.cell()
	if err != nil {
		return fmt.Errorf("exec %s: %w", argv[0], err)
	}
	defer cell.release()
	out := &boundedBuffer{max: maxExecOutput}
	err = runContained(ctx, cell, argv, t, out)
	switch {
	case err == nil && ctx.Err() == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("exec %s: %w, its processes killed%s", argv[0], timeoutError(t), out.suffix())
	case ctx.Err() != nil:
		return fmt.Errorf("exec %s: %w", argv[0], ctx.Err())
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return fmt.Errorf("exec %s: %s%s", argv[0], exitErr.ProcessState, out.suffix())
	}
	return fmt.Errorf("exec %s: %w", argv[0], rootCause(err))
}

// runContained starts argv in cell with its output going to out and waits
// for it. When the command exits, everything it left running is killed, so
// the output pipe closes: a background child cannot hold the probe.
func runContained(ctx context.Context, cell *jailCell, argv []string, t Target, out io.Writer) error {
	r, w, err := os.Pipe()
	if err != nil {
		return err
	}
	defer r.Close()
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"DIRECTOR_TARGET_ADDR="+t.Addr.String(),
		"DIRECTOR_TARGET_PORT="+strconv.Itoa(int(t.Port)))
	cmd.Stdout, cmd.Stderr = w, w // files: Wait waits for the process only
	cmd.SysProcAttr = cell.attr()
	cmd.Cancel = func() error {
		cell.started(cmd.Process.Pid) // Cancel may run before Start returns
		return cell.kill()
	}
	err = cmd.Start()
	w.Close()
	if err != nil {
		return err
	}
	cell.started(cmd.Process.Pid)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		_, _ = io.Copy(out, r)
	}()
	err = cmd.Wait()
	_ = cell.kill()
	select {
	case <-copied:
	case <-time.After(execOutputWait):
		// A process outside the cell (the fallback's setsid escapee) still
		// holds the pipe: stop reading.
		r.Close()
		<-copied
	}
	return err
}

// boundedBuffer keeps the first max bytes written to it and counts the rest, so
// a chatty script cannot grow memory. It is written from two goroutines
// (stdout and stderr copiers), hence the mutex.
type boundedBuffer struct {
	mu      sync.Mutex
	max     int
	buf     bytes.Buffer
	dropped int
}

// Write keeps what fits and reports everything written, so the copier goes on
// draining the pipe instead of blocking the script.
func (b *boundedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	keep := min(len(p), b.max-b.buf.Len())
	b.buf.Write(p[:keep])
	b.dropped += len(p) - keep
	return len(p), nil
}

// suffix renders the captured output for an error message: ": <output>" on one
// line, or "" when there was none.
func (b *boundedBuffer) suffix() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := strings.Join(strings.Fields(b.buf.String()), " ")
	if s == "" {
		return ""
	}
	if b.dropped > 0 {
		s += fmt.Sprintf(" ... (%d more bytes)", b.dropped)
	}
	return ": " + s
}
