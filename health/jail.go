package health

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// jailPrefix names the cgroup of one jail's exec probes, followed by the
// daemon's PID and a random suffix ("directord-probes-4242-9f3a01c2"), so a
// later start can tell its predecessors' leftovers apart and two schedulers
// in one process do not share a group.
const jailPrefix = "directord-probes-"

// jail contains the processes of exec probes so that none outlives its
// probe, not even one that forks into the background, calls setsid or
// double-forks. Each probe runs in a cgroup v2 group of its own, created
// under the daemon's own cgroup (<own>/directord-probes-<pid>/p<n>); the
// child is cloned straight into it (CLONE_INTO_CGROUP, no window to
// escape), and when the probe ends, by exit or timeout, cgroup.kill kills
// whatever is left in the group. Closing the jail (the scheduler stopping)
// kills every probe's group; a daemon killed with SIGKILL leaves its group,
// which the next start removes with everything in it.
//
// Without a writable cgroup v2 hierarchy (not root and no delegated cgroup,
// or cgroup v1 only) the jail falls back to a process group per probe,
// killed when the probe ends: that catches background children, but a
// child that calls setsid escapes. The jail says so once, in the log and in
// Mode.
type jail struct {
	log *slog.Logger

	mu    sync.Mutex
	ready bool   // setup ran (again after Close)
	base  string // our group, "" in process-group mode
	why   string // why the fallback is in use
	seq   uint64
	live  map[string]struct{} // probe groups not yet removed
}

// jailCell is one probe's containment.
type jailCell struct {
	j    *jail
	dir  string       // the probe's cgroup, "" in process-group mode
	fd   *os.File     // dir, open for CLONE_INTO_CGROUP
	pgid atomic.Int64 // the command's process group, once it started
}

// newJail returns a jail; the cgroup is set up at the first probe.
func newJail(log *slog.Logger) *jail {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &jail{log: log, live: map[string]struct{}{}}
}

// setupLocked finds the daemon's own cgroup v2 group, removes leftovers of
// earlier daemons and creates this jail's group, once (again after Close);
// on failure the jail stays in process-group mode.
func (j *jail) setupLocked() {
	if j.ready {
		return
	}
	j.ready = true
	j.base, j.why = "", ""
	own, err := ownCgroup()
	if err == nil {
		removeStale(own, j.log)
		base := filepath.Join(own, fmt.Sprintf("%s%d-%08x", jailPrefix, os.Getpid(), rand.Uint32()))
		if err = os.Mkdir(base, 0o755); err == nil {
			j.base = base
		}
	}
	if err != nil {
		j.why = err.Error()
		j.log.Warn("exec checks run without cgroup containment: a check's child that calls setsid can outlive it",
			"reason", j.why, "hint", "run directord as root on cgroup v2, or under systemd with Delegate=yes")
	}
}

// Mode describes the containment in use: "cgroup <path>" or
// "process group (reason)".
func (j *jail) Mode() string {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.setupLocked()
	if j.base != "" {
		return "cgroup " + j.base
	}
	return "process group (" + j.why + ")"
}

// cell prepares the containment of one probe. Its attr is to be applied to
// the command before it starts; release must be called once it ended.
func (j *jail) cell() (*jailCell, error) {
	j.mu.Lock()
	j.setupLocked()
	c := &jailCell{j: j}
	if j.base == "" {
		j.mu.Unlock()
		return c, nil
	}
	j.seq++
	c.dir = filepath.Join(j.base, "p"+strconv.FormatUint(j.seq, 10))
	j.live[c.dir] = struct{}{}
	j.mu.Unlock()
	if err := os.Mkdir(c.dir, 0o755); err != nil {
		j.forget(c.dir)
		return nil, fmt.Errorf("create the probe's cgroup: %w", err)
	}
	fd, err := os.Open(c.dir)
	if err != nil {
		c.release()
		return nil, fmt.Errorf("open the probe's cgroup: %w", err)
	}
	c.fd = fd
	return c, nil
}

// attr returns the process attributes that put the command in the cell.
func (c *jailCell) attr() *syscall.SysProcAttr {
	if c.fd != nil {
		return &syscall.SysProcAttr{UseCgroupFD: true, CgroupFD: int(c.fd.Fd())}
	}
	return &syscall.SysProcAttr{Setpgid: true}
}

// started records the command's PID, which leads its process group in
// fallback mode.
func (c *jailCell) started(pid int) { c.pgid.Store(int64(pid)) }

// kill kills every process in the cell.
func (c *jailCell) kill() error {
	if c.dir != "" {
		return killGroup(c.dir)
	}
	if pgid := int(c.pgid.Load()); pgid > 0 {
		if err := syscall.Kill(-pgid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
	}
	return nil
}

// release kills what is left in the cell and removes its cgroup.
func (c *jailCell) release() {
	if err := c.kill(); err != nil {
		c.j.log.Warn("exec check: killing the probe's processes failed", "err", err)
	}
	if c.fd != nil {
		c.fd.Close()
	}
	if c.dir == "" {
		return
	}
	if err := removeGroup(c.dir); err != nil {
		c.j.log.Warn("exec check: the probe's cgroup is left behind", "cgroup", c.dir, "err", err)
		return // Close retries
	}
	c.j.forget(c.dir)
}

// forget drops a removed probe group from the live set.
func (j *jail) forget(dir string) {
	j.mu.Lock()
	delete(j.live, dir)
	j.mu.Unlock()
}

// Close kills every probe's processes and removes the jail's group. A later
// probe sets the jail up again.
func (j *jail) Close() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.base == "" {
		j.ready = false
		return nil
	}
	var errs []error
	for dir := range j.live {
		if err := removeGroup(dir); err != nil {
			errs = append(errs, err)
			continue
		}
		delete(j.live, dir)
	}
	if len(errs) == 0 {
		if err := removeGroup(j.base); err != nil {
			errs = append(errs, err)
		} else {
			j.ready = false
		}
	}
	return errors.Join(errs...)
}

// ownCgroup returns the directory of this process's cgroup v2 group.
func ownCgroup() (string, error) {
	mount, err := cgroup2Mount()
	if err != nil {
		return "", err
	}
	raw, err := os.ReadFile("/proc/self/cgroup")
	if err != nil {
		return "", err
	}
	for line := range strings.Lines(string(raw)) {
		if path, ok := strings.CutPrefix(strings.TrimSpace(line), "0::"); ok {
			return filepath.Join(mount, path), nil
		}
	}
	return "", errors.New("this process is in no cgroup v2 group (/proc/self/cgroup has no 0:: line)")
}

// cgroup2Mount finds where the cgroup v2 hierarchy is mounted.
func cgroup2Mount() (string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// ... mountpoint ... - fstype source options
		pre, post, ok := strings.Cut(sc.Text(), " - ")
		fields := strings.Fields(pre)
		if ok && len(fields) >= 5 && strings.HasPrefix(post, "cgroup2 ") {
			return fields[4], nil
		}
	}
	return "", errors.New("no cgroup v2 hierarchy is mounted")
}

// removeStale kills and removes the probe groups of directord processes
// that no longer run (killed with SIGKILL, or crashed).
func removeStale(own string, log *slog.Logger) {
	ents, _ := os.ReadDir(own)
	for _, e := range ents {
		rest, ok := strings.CutPrefix(e.Name(), jailPrefix)
		pidText, _, _ := strings.Cut(rest, "-")
		pid, err := strconv.Atoi(pidText)
		if !e.IsDir() || !ok || err != nil || processRuns(pid) {
			continue
		}
		dir := filepath.Join(own, e.Name())
		subs, _ := os.ReadDir(dir)
		for _, s := range subs {
			if s.IsDir() {
				_ = removeGroup(filepath.Join(dir, s.Name()))
			}
		}
		if err := removeGroup(dir); err != nil {
			log.Warn("exec checks: cannot remove a dead directord's probe cgroup", "cgroup", dir, "err", err)
			continue
		}
		log.Info("exec checks: removed the probe cgroup of a directord that is gone, with its processes", "cgroup", dir)
	}
}

// processRuns reports whether a process with this PID exists.
func processRuns(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}

// killGroup kills every process in a cgroup: cgroup.kill (Linux 5.14), or
// SIGKILL to each member with the group frozen so none can fork meanwhile.
func killGroup(dir string) error {
	err := os.WriteFile(filepath.Join(dir, "cgroup.kill"), []byte("1"), 0)
	if err == nil || errors.Is(err, os.ErrNotExist) && !dirExists(dir) {
		return nil
	}
	_ = os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("1"), 0)
	procs, rerr := os.ReadFile(filepath.Join(dir, "cgroup.procs"))
	if rerr != nil {
		return fmt.Errorf("kill the processes of %s: %w", dir, rerr)
	}
	for _, f := range strings.Fields(string(procs)) {
		if pid, err := strconv.Atoi(f); err == nil {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
	_ = os.WriteFile(filepath.Join(dir, "cgroup.freeze"), []byte("0"), 0)
	return nil
}

// removeGroup kills a cgroup's processes, waits (bounded) until the group
// is empty and removes it.
func removeGroup(dir string) error {
	if err := killGroup(dir); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		err := syscall.Rmdir(dir)
		switch {
		case err == nil || errors.Is(err, syscall.ENOENT):
			return nil
		case !errors.Is(err, syscall.EBUSY) || time.Now().After(deadline):
			return fmt.Errorf("remove cgroup %s: %w", dir, err)
		}
		// Killed processes leave the group once they are reaped.
		waitEmpty(dir, 10*time.Millisecond)
	}
}

// waitEmpty waits up to d for cgroup.events to say "populated 0".
func waitEmpty(dir string, d time.Duration) {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		ev, err := os.ReadFile(filepath.Join(dir, "cgroup.events"))
		if err != nil || bytes.Contains(ev, []byte("populated 0")) {
			return
		}
		time.Sleep(time.Millisecond)
	}
}

// dirExists reports whether dir exists.
func dirExists(dir string) bool {
	_, err := os.Stat(dir)
	return err == nil
}
