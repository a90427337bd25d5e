package netlab

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a process started inside a namespace. Its stdout and stderr are
// collected (Output, WaitOutput); stdin is a pipe (Send).
type Proc struct {
	// Name labels the process in logs.
	Name string
	// PID is the process ID (`ip netns exec` execs the command, so this is
	// the command itself).
	PID int

	cmd   *exec.Cmd
	stdin io.WriteCloser
	done  chan struct{} // closed when the process has exited
	err   error         // exit status, valid after done

	mu      sync.Mutex
	out     bytes.Buffer
	lines   []string
	newLine chan struct{} // closed and replaced on every output line
}

// Start runs argv inside the namespace with extra environment variables
// ("KEY=value") and kills it at cleanup.
func (ns *NS) Start(name string, env []string, argv ...string) *Proc {
	ns.lab.t.Helper()
	full := append([]string{"netns", "exec", ns.Name}, argv...)
	cmd := exec.Command("ip", full...)
	cmd.Env = append(os.Environ(), env...)
	// Own process group: a signal to the test's group (Ctrl-C) does not
	// reach it half-way, and cleanup stays in charge.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &Proc{Name: name, cmd: cmd, done: make(chan struct{}), newLine: make(chan struct{})}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		ns.lab.t.Fatalf("netlab: %s: stdout pipe: %v", name, err)
	}
	cmd.Stderr = cmd.Stdout // both into one pipe, in order
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		ns.lab.t.Fatalf("netlab: %s: stdin pipe: %v", name, err)
	}
	if err := cmd.Start(); err != nil {
		ns.lab.t.Fatalf("netlab: start %s (%s) in %s: %v", name, strings.Join(argv, " "), ns.Name, err)
	}
	p.PID = cmd.Process.Pid
	ns.lab.mu.Lock()
	ns.lab.procs = append(ns.lab.procs, p)
	ns.lab.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64*1024), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.Write(sc.Bytes())
			p.out.WriteByte('\n')
			p.lines = append(p.lines, sc.Text())
			close(p.newLine)
			p.newLine = make(chan struct{})
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p
}

// Send writes one line to the process's stdin.
func (p *Proc) Send(line string) error {
	if _, err := io.WriteString(p.stdin, line+"\n"); err != nil {
		return fmt.Errorf("write to %s: %w", p.Name, err)
	}
	return nil
}

// Output returns everything the process printed so far.
func (p *Proc) Output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// WaitOutput waits until the process prints a line containing substr after
// the first skip lines, and returns that line and its index. Use the index
// plus one as the next skip to wait for the following answer.
func (p *Proc) WaitOutput(substr string, skip int, timeout time.Duration) (string, int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		p.mu.Lock()
		for i := skip; i < len(p.lines); i++ {
			if strings.Contains(p.lines[i], substr) {
				line := p.lines[i]
				p.mu.Unlock()
				return line, i, nil
			}
		}
		skip = max(skip, len(p.lines))
		next := p.newLine
		p.mu.Unlock()
		select {
		case <-next:
		case <-p.done:
			// Lines printed just before the exit are already in p.lines
			// (the reader closes done after the last line).
			if line, i, ok := p.find(substr, skip); ok {
				return line, i, nil
			}
			return "", 0, fmt.Errorf("%s exited (%v) without printing %q; output:\n%s", p.Name, p.err, substr, p.Output())
		case <-deadline.C:
			return "", 0, fmt.Errorf("%s did not print %q within %s; output:\n%s", p.Name, substr, timeout, tail(p.Output(), 40))
		}
	}
}

// find looks for substr in the lines from skip on.
func (p *Proc) find(substr string, skip int) (string, int, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := skip; i < len(p.lines); i++ {
		if strings.Contains(p.lines[i], substr) {
			return p.lines[i], i, true
		}
	}
	return "", 0, false
}

// Signal sends sig to the process (SIGSTOP freezes it, SIGCONT resumes).
func (p *Proc) Signal(sig syscall.Signal) error {
	if err := syscall.Kill(p.PID, sig); err != nil {
		return fmt.Errorf("signal %v to %s (pid %d): %w", sig, p.Name, p.PID, err)
	}
	return nil
}

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Wait waits up to timeout for the process to exit and returns its exit error
// (nil for status 0).
func (p *Proc) Wait(timeout time.Duration) error {
	select {
	case <-p.done:
		return p.err
	case <-time.After(timeout):
		return fmt.Errorf("%s (pid %d) still running after %s", p.Name, p.PID, timeout)
	}
}

// Kill sends SIGKILL to the process (by PID; a stopped process dies too) and
// waits for it. It is safe to call more than once.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return
	}
	<-p.done
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}
