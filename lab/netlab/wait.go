package netlab

import (
	"fmt"
	"testing"
	"time"
)

// Wait calls cond every interval until it returns nil or timeout passes. It
// returns how long that took, or the last error of cond once time is up.
func Wait(timeout, interval time.Duration, cond func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := cond()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) >= timeout {
			return time.Since(start), fmt.Errorf("after %s: %w", timeout, err)
		}
		time.Sleep(interval)
	}
}

// MustWait is Wait with a 20 ms interval that fails the test on timeout,
// naming what it waited for.
func MustWait(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	d, err := Wait(timeout, 20*time.Millisecond, cond)
	if err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
	return d
}

// Hold checks cond every interval for the whole duration and returns the
// first error: "stays up for 10 s" rather than "is up now".
func Hold(d, interval time.Duration, cond func() error) error {
	end := time.Now().Add(d)
	for {
		if err := cond(); err != nil {
			return fmt.Errorf("after %s of %s: %w", time.Since(end.Add(-d)).Round(time.Millisecond), d, err)
		}
		if time.Now().After(end) {
			return nil
		}
		time.Sleep(interval)
	}
}
