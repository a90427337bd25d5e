package nslab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Proc is a process started inside a node. Its standard output and error go,
// in order, to a log file in the lab's folder and to a line buffer that
// WaitOutput searches; its standard input is a pipe (Send).
type Proc struct {
	// Name labels the process in logs ("d1/directord", "rtr/bgpd").
	Name string
	// PID is the process itself: `ip netns exec` and nsenter replace
	// themselves with the command, so signals reach it directly.
	PID int
	// LogPath is the file that receives its output.
	LogPath string

	node  *Node
	stdin io.WriteCloser
	done  chan struct{} // closed when the process has exited
	err   error         // exit status, valid after done

	mu      sync.Mutex
	lines   []Line
	newLine chan struct{} // closed and replaced on every output line
}

// Line is one line a process printed and when this process read it.
type Line struct {
	At   time.Time
	Text string
}

// startProc starts cmd with its output in logPath and in memory.
func startProc(name string, node *Node, logPath string, cmd *exec.Cmd) (*Proc, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o644)
	if err != nil {
		return nil, fmt.Errorf("log file of %s: %w", name, err)
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		log.Close()
		return nil, fmt.Errorf("output pipe of %s: %w", name, err)
	}
	// A large pipe: a daemon must never wait on its log output because
	// this process reads it late (a slow VM); 1 MiB is the default limit.
	unix.FcntlInt(pw.Fd(), unix.F_SETPIPE_SZ, 1<<20)
	cmd.Stdout, cmd.Stderr = pw, pw // one pipe: both streams, in order
	p := &Proc{Name: name, node: node, LogPath: logPath, done: make(chan struct{}), newLine: make(chan struct{})}
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		log.Close()
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("input pipe of %s: %w", name, err)
	}
	// Own process group: a Ctrl-C to the caller's group does not reach the
	// process half-way; the lab stays in charge of it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		pr.Close()
		pw.Close()
		return nil, fmt.Errorf("start %s (%s): %w", name, strings.Join(cmd.Args, " "), err)
	}
	pw.Close() // the child holds the write end now
	p.PID = cmd.Process.Pid
	go p.collect(pr, log, cmd)
	return p, nil
}

// collect copies the output into the log and the line buffer until the
// process closes it, then reaps the process.
func (p *Proc) collect(r io.ReadCloser, log *os.File, cmd *exec.Cmd) {
	br := bufio.NewReaderSize(r, 64<<10)
	for {
		text, err := br.ReadString('\n')
		if text != "" {
			log.WriteString(text)
			if !strings.HasSuffix(text, "\n") {
				log.WriteString("\n")
			}
			p.mu.Lock()
			p.lines = append(p.lines, Line{At: time.Now(), Text: strings.TrimSuffix(text, "\n")})
			close(p.newLine)
			p.newLine = make(chan struct{})
			p.mu.Unlock()
		}
		if err != nil {
			break
		}
	}
	r.Close()
	p.err = cmd.Wait()
	log.Close()
	close(p.done)
}

// Node is the node the process runs in.
func (p *Proc) Node() *Node { return p.node }

// Send writes one line to the process's standard input.
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
	var b strings.Builder
	for _, l := range p.lines {
		b.WriteString(l.Text)
		b.WriteByte('\n')
	}
	return b.String()
}

// Lines returns the lines printed from index from on, with the time each
// was read.
func (p *Proc) Lines(from int) []Line {
	p.mu.Lock()
	defer p.mu.Unlock()
	if from >= len(p.lines) {
		return nil
	}
	return append([]Line(nil), p.lines[max(from, 0):]...)
}

// LineCount is how many lines the process printed so far.
func (p *Proc) LineCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.lines)
}

// WaitOutput waits until the process prints a line containing substr after
// the first skip lines, and returns that line and its index. Use the index
// plus one as the next skip to wait for the following answer.
func (p *Proc) WaitOutput(substr string, skip int, timeout time.Duration) (string, int, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		line, i, next, ok := p.find(substr, skip)
		if ok {
			return line, i, nil
		}
		skip = i
		select {
		case <-next:
		case <-p.done:
			// Lines printed before the exit are in p.lines already: the
			// collector closes done after the last line.
			if line, i, _, ok := p.find(substr, skip); ok {
				return line, i, nil
			}
			return "", 0, fmt.Errorf("%s exited (%v) without printing %q; output:\n%s", p.Name, p.err, substr, Tail(p.Output(), 40))
		case <-deadline.C:
			return "", 0, fmt.Errorf("%s did not print %q within %s; output:\n%s", p.Name, substr, timeout, Tail(p.Output(), 40))
		}
	}
}

// find looks for substr in the lines from skip on. When it finds none, it
// returns the number of lines searched and a channel closed at the next line.
func (p *Proc) find(substr string, skip int) (string, int, <-chan struct{}, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i := skip; i < len(p.lines); i++ {
		if strings.Contains(p.lines[i].Text, substr) {
			return p.lines[i].Text, i, nil, true
		}
	}
	return "", max(skip, len(p.lines)), p.newLine, false
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

// Stop asks the process to end with SIGTERM and kills it after grace. It
// returns the exit error when the process ended by itself in time, and an
// error saying so when it had to be killed.
func (p *Proc) Stop(grace time.Duration) error {
	if p.Exited() {
		return p.err
	}
	syscall.Kill(p.PID, syscall.SIGCONT) // a frozen process cannot handle SIGTERM
	syscall.Kill(p.PID, syscall.SIGTERM)
	err := p.Wait(grace)
	if p.Exited() {
		return err
	}
	p.Kill()
	return fmt.Errorf("%s (pid %d) did not end within %s of SIGTERM and was killed", p.Name, p.PID, grace)
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
