package nslab

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// Wait calls cond every interval until it returns nil, timeout passes or ctx
// ends. It returns how long that took, or the last error of cond.
func Wait(ctx context.Context, timeout, interval time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	t := time.NewTimer(0)
	defer t.Stop()
	<-t.C
	for {
		err := cond()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) >= timeout {
			return time.Since(start), fmt.Errorf("after %s: %w", timeout, err)
		}
		t.Reset(interval)
		select {
		case <-ctx.Done():
			return time.Since(start), fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-t.C:
		}
	}
}

// Hold checks cond every interval for the whole duration d and returns its
// first error: "stays up for 10 s" rather than "is up now".
func Hold(ctx context.Context, d, interval time.Duration, cond func() error) error {
	start := time.Now()
	end := start.Add(d)
	for {
		if err := cond(); err != nil {
			return fmt.Errorf("after %s of %s: %w", time.Since(start).Round(time.Millisecond), d, err)
		}
		if time.Now().After(end) {
			return nil
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(interval):
		}
	}
}

// Tail returns the last n lines of s, after a "..." line when some were
// left out.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = append([]string{"..."}, lines[len(lines)-n:]...)
	}
	return strings.Join(lines, "\n")
}

// CPUTime returns the user plus system CPU time a process has used so far
// (from /proc/PID/stat, in USER_HZ=100 ticks).
func CPUTime(pid int) (time.Duration, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read cpu time of pid %d: %w", pid, err)
	}
	// The command name (field 2) may contain spaces; fields after its
	// closing parenthesis are fixed: utime and stime are 14 and 15.
	s := string(b)
	rest := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(rest) < 13 {
		return 0, fmt.Errorf("parse /proc/%d/stat: too few fields", pid)
	}
	utime, err1 := strconv.ParseInt(rest[11], 10, 64)
	stime, err2 := strconv.ParseInt(rest[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, fmt.Errorf("parse /proc/%d/stat: utime %q stime %q", pid, rest[11], rest[12])
	}
	return time.Duration(utime+stime) * 10 * time.Millisecond, nil
}

// ProcState returns the state letter of a process ("R", "S", "T" for
// stopped, ...) from /proc/PID/stat.
func ProcState(pid int) (string, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return "", err
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) == 0 {
		return "", fmt.Errorf("parse /proc/%d/stat: no state", pid)
	}
	return fields[0], nil
}
