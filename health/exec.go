package health

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

const (
	// maxExecOutput bounds the output an exec check keeps for LastError.
	maxExecOutput = 512
	// execWaitDelay is how long to wait for output pipes after the process
	// group was killed, in case a child escaped the group and holds them open.
	execWaitDelay = 200 * time.Millisecond
)

// checkExec runs Spec.Command the way keepalived's MISC_CHECK does: exit status
// 0 passes, anything else fails. The target is in the environment as
// DIRECTOR_TARGET_ADDR and DIRECTOR_TARGET_PORT. The command runs in its own
// process group, and the whole group is killed at the deadline so a script's
// children cannot outlive the probe.
func checkExec(ctx context.Context, t Target) error {
	ctx, cancel := probeContext(ctx, t)
	defer cancel()
	argv := t.Spec.Command
	if len(argv) == 0 || argv[0] == "" {
		return errors.New("exec check has no command; set the check's command")
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(),
		"DIRECTOR_TARGET_ADDR="+t.Addr.String(),
		"DIRECTOR_TARGET_PORT="+strconv.Itoa(int(t.Port)))
	out := &boundedBuffer{max: maxExecOutput}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		// Negative pid: the whole process group the command leads.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	cmd.WaitDelay = execWaitDelay

	err := cmd.Run()
	switch {
	case err == nil && ctx.Err() == nil:
		return nil
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		return fmt.Errorf("exec %s: %w, process group killed%s", argv[0], timeoutError(t), out.suffix())
	case ctx.Err() != nil:
		return fmt.Errorf("exec %s: %w", argv[0], ctx.Err())
	}
	var exitErr *exec.ExitError
	if errors.As(err, &exitErr) {
		return fmt.Errorf("exec %s: %s%s", argv[0], exitErr.ProcessState, out.suffix())
	}
	return fmt.Errorf("exec %s: %w", argv[0], rootCause(err))
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
