package runner

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// Proc is a process the runner started inside a node. Its stdout and stderr
// go to a log file in the lab's state folder.
type Proc struct {
	// Name labels the process in logs ("d1/cmd", "router/bgpd").
	Name string
	// Node is the node the process runs in.
	Node string
	// PID is the process itself: nsenter and ip netns exec replace
	// themselves with the command, so signals reach it directly.
	PID int
	// LogPath is the file that receives its output.
	LogPath string

	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // exit status, valid after done
}

// startProc starts cmd with its output in logPath.
func startProc(name, node, logPath string, cmd *exec.Cmd) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file of %s: %w", name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	// Own process group: a Ctrl-C to the caller's group does not reach
	// node processes half-way; Destroy stays in charge of them.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(cmd.Args, " "), err)
	}
	p := &Proc{Name: name, Node: node, PID: cmd.Process.Pid, LogPath: logPath, cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	return p, nil
}

// Signal sends sig to the process (SIGSTOP freezes it, SIGCONT resumes it).
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

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits up to timeout for the process to exit and returns its exit
// error (nil for status 0).
func (p *Proc) Wait(timeout time.Duration) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return p.err
	case <-t.C:
		return fmt.Errorf("%s (pid %d) still running after %s", p.Name, p.PID, timeout)
	}
}

// Stop asks the process to end with SIGTERM and kills it after grace.
func (p *Proc) Stop(grace time.Duration) {
	if p.Exited() {
		return
	}
	syscall.Kill(p.PID, syscall.SIGCONT) // a frozen process cannot handle SIGTERM
	syscall.Kill(p.PID, syscall.SIGTERM)
	if p.Wait(grace) != nil && !p.Exited() {
		p.Kill()
	}
}

// Kill sends SIGKILL (by PID; a stopped process dies too) and waits for the
// process to be reaped. It is safe to call more than once.
func (p *Proc) Kill() {
	if p.Exited() {
		return
	}
	if err := syscall.Kill(p.PID, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		return
	}
	<-p.done
}

// Output returns what the process has written so far.
func (p *Proc) Output() string {
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return fmt.Sprintf("(cannot read %s: %v)", p.LogPath, err)
	}
	return string(data)
}
