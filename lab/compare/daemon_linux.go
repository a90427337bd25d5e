package compare

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Binaries locates the two programs.
type Binaries struct {
	// Directord is the directord binary.
	Directord string
	// Keepalived is the keepalived binary (Debian's /usr/sbin/keepalived).
	Keepalived string
}

// daemon is one running program in the director's namespace.
type daemon struct {
	kind    Daemon
	cmd     *exec.Cmd
	started time.Time
	exited  chan struct{}
	mu      sync.Mutex
	log     bytes.Buffer
}

// startDaemon starts kind with configuration cfg in namespace ns; dir holds its
// files. Its log goes to a buffer (and to logw when set).
func startDaemon(kind Daemon, bins Binaries, ns, cfg, dir string, logw io.Writer) (*daemon, error) {
	var argv []string
	switch kind {
	case Keepalived:
		argv = []string{bins.Keepalived, "--dont-fork", "--check", "--log-console", "--no-syslog",
			"--dont-release-ipvs", "--use-file", cfg,
			"--pid", filepath.Join(dir, "keepalived.pid"), "--checkers_pid", filepath.Join(dir, "checkers.pid")}
	case Directord:
		argv = []string{bins.Directord, "run", "-config", cfg}
	default:
		return nil, fmt.Errorf("unknown daemon %q", kind)
	}
	d := &daemon{kind: kind, exited: make(chan struct{})}
	d.cmd = exec.Command("ip", append([]string{"netns", "exec", ns}, argv...)...)
	w := io.Writer(&lockedWriter{mu: &d.mu, w: &d.log})
	if logw != nil {
		w = io.MultiWriter(w, logw)
	}
	d.cmd.Stdout, d.cmd.Stderr = w, w
	d.started = time.Now()
	d.mark(w, "started", d.started)
	if err := d.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", kind, err)
	}
	go func() { _ = d.cmd.Wait(); d.mark(w, "exited", time.Now()); close(d.exited) }()
	return d, nil
}

// mark writes a line with the harness's own time of event into the
// daemon's log, in the daemons' time format, so the log shows where the
// time between process start and first log line, or SIGTERM and exit, went.
func (d *daemon) mark(w io.Writer, event string, at time.Time) {
	fmt.Fprintf(w, "time=%s benchcompare: %s %s\n", at.UTC().Format("2006-01-02T15:04:05.000Z"), d.kind, event)
}

// lockedWriter serialises writes to w.
type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// output returns what the daemon logged so far.
func (d *daemon) output() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.log.String()
}

// pids returns the daemon's process and its descendants (keepalived's checker).
func (d *daemon) pids() []int {
	root := d.cmd.Process.Pid
	children := map[int][]int{}
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if f, err := procStat(pid); err == nil {
			children[f.ppid] = append(children[f.ppid], pid)
		}
	}
	out := []int{root}
	for i := 0; i < len(out); i++ {
		out = append(out, children[out[i]]...)
	}
	return out
}

// stat holds the fields of /proc/PID/stat used here.
type stat struct {
	ppid int
	cpu  time.Duration // utime + stime + cutime + cstime
	// system is stime + cstime: the part of cpu spent in the kernel.
	system time.Duration
	// faults counts the minor page faults (minflt + cminflt): under
	// emulation each costs system time.
	faults int64
}

// procStat reads /proc/PID/stat. CPU times are in USER_HZ (100 per second).
func procStat(pid int) (stat, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return stat{}, err
	}
	s := string(b)
	// The command (field 2) may hold spaces; after its ")" fields are fixed:
	// state is 3, ppid 4, utime 14 ... cstime 17.
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(f) < 15 {
		return stat{}, fmt.Errorf("/proc/%d/stat: %d fields", pid, len(f))
	}
	var st stat
	st.ppid, _ = strconv.Atoi(f[1])
	var ticks, sys int64
	for _, i := range []int{7, 8} { // minflt, cminflt
		v, _ := strconv.ParseInt(f[i], 10, 64)
		st.faults += v
	}
	for _, i := range []int{11, 12, 13, 14} {
		v, _ := strconv.ParseInt(f[i], 10, 64)
		ticks += v
		if i == 12 || i == 14 {
			sys += v
		}
	}
	st.cpu = time.Duration(ticks) * 10 * time.Millisecond
	st.system = time.Duration(sys) * 10 * time.Millisecond
	return st, nil
}

// cpu is the CPU time the daemon's processes used so far.
func (d *daemon) cpu() time.Duration {
	total, _, _ := d.cpuSplit()
	return total
}

// cpuSplit is the CPU time the daemon's processes used so far, the part of
// it spent in the kernel (system time), and their minor page faults.
func (d *daemon) cpuSplit() (total, system time.Duration, faults int64) {
	for _, pid := range d.pids() {
		if st, err := procStat(pid); err == nil {
			total += st.cpu
			system += st.system
			faults += st.faults
		}
	}
	return total, system, faults
}

// rss is the resident memory of the daemon's processes, summed (keepalived's
// parent and checker are counted both), the largest single process's, and
// the anonymous part of the sum: the memory the daemon itself holds, without
// the pages of its binary and libraries that the page cache shares and can
// drop.
func (d *daemon) rss() (sum, largest, anon int64) {
	for _, pid := range d.pids() {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			if kb, ok := statusKB(line, "VmRSS:"); ok {
				sum += kb * 1024
				largest = max(largest, kb*1024)
			}
			if kb, ok := statusKB(line, "RssAnon:"); ok {
				anon += kb * 1024
			}
		}
	}
	return sum, largest, anon
}

// statusKB parses a /proc/PID/status line "name   123 kB".
func statusKB(line, name string) (int64, bool) {
	v, ok := strings.CutPrefix(line, name)
	if !ok {
		return 0, false
	}
	kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
	return kb, err == nil
}

// signal sends sig to the daemon's main process (keepalived's parent relays
// reloads and stops to its checker).
func (d *daemon) signal(sig syscall.Signal) error {
	return d.cmd.Process.Signal(sig)
}

// stop sends SIGTERM and returns how long the daemon took to exit, killing
// it after timeout.
func (d *daemon) stop(ctx context.Context, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	d.mark(d.cmd.Stdout, "sent SIGTERM", start)
	if err := d.signal(syscall.SIGTERM); err != nil {
		return 0, fmt.Errorf("SIGTERM %s: %w", d.kind, err)
	}
	select {
	case <-d.exited:
		return time.Since(start), nil
	case <-time.After(timeout):
	case <-ctx.Done():
	}
	d.kill()
	return time.Since(start), fmt.Errorf("%s did not exit within %s of SIGTERM; killed", d.kind, timeout)
}

// kill ends the daemon and its children at once.
func (d *daemon) kill() {
	for _, pid := range d.pids() {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-d.exited
}

// alive reports whether the daemon's main process still runs.
func (d *daemon) alive() bool {
	select {
	case <-d.exited:
		return false
	default:
		return true
	}
}
