package compare

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// profiler records a daemon's CPU profile with perf (software clock, which
// works under emulation) for a window.
type profiler struct {
	cmd  *exec.Cmd
	data string
	err  error
}

// startProfile starts perf record on the daemon's processes for window.
func startProfile(d *daemon, window time.Duration, data string) *profiler {
	p := &profiler{data: data}
	args := []string{"record", "-q", "-e", "cpu-clock", "-F", "499", "-g", "-o", data}
	var pids []string
	for _, pid := range d.pids() {
		pids = append(pids, strconv.Itoa(pid))
	}
	args = append(args, "-p", strings.Join(pids, ","), "--", "sleep", fmt.Sprint(window.Seconds()))
	p.cmd = exec.Command("perf", args...)
	p.err = p.cmd.Start()
	return p
}

// report waits for the recording and returns perf report's text.
func (p *profiler) report() string {
	if p.err != nil {
		return "perf record: " + p.err.Error()
	}
	if err := p.cmd.Wait(); err != nil {
		return "perf record: " + err.Error()
	}
	var b strings.Builder
	for _, args := range [][]string{
		{"--no-children", "--percent-limit", "0.5", "--sort", "dso,symbol", "-g", "none"},
		{"--children", "--percent-limit", "3", "--sort", "symbol", "-g", "none"},
		// Who calls the heaviest symbols: a context switch or the runtime's
		// monitor is cheap to see and hard to blame without its callers.
		{"--no-children", "--percent-limit", "4", "--sort", "symbol", "-g", "caller,2,callee,function,percent"},
	} {
		out, err := exec.Command("perf", append([]string{"report", "-i", p.data, "--stdio"}, args...)...).CombinedOutput()
		if err != nil {
			fmt.Fprintf(&b, "perf report: %v\n", err)
		}
		b.Write(out)
	}
	return b.String()
}
