package main

import (
	"runtime/debug"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// gcPercent returns the collector's current target.
func gcPercent() int {
	p := debug.SetGCPercent(100)
	debug.SetGCPercent(p)
	return p
}

// TestApplyGCDefault sets directord's GC target only when the operator's
// environment does not tune the collector.
func TestApplyGCDefault(t *testing.T) {
	saved := debug.SetGCPercent(100)
	t.Cleanup(func() { debug.SetGCPercent(saved) })
	for _, tc := range []struct {
		env  map[string]string
		want int
		says string
	}{
		{env: nil, want: defaultGCPercent, says: "GOGC=50"},
		{env: map[string]string{"GOGC": "200"}, want: 100, says: `GOGC="200"`},
		{env: map[string]string{"GOMEMLIMIT": "64MiB"}, want: 100, says: `GOMEMLIMIT="64MiB"`},
	} {
		debug.SetGCPercent(100) // as the runtime would have it from the environment
		msg := applyGCDefault(func(k string) string { return tc.env[k] })
		if got := gcPercent(); got != tc.want {
			t.Errorf("env %v: GC percent %d, want %d", tc.env, got, tc.want)
		}
		if !strings.Contains(msg, tc.says) {
			t.Errorf("env %v: %q does not say %s", tc.env, msg, tc.says)
		}
	}
}

// TestDisableHugePages: directord's process is kept out of transparent huge
// pages (the kernel reports the flag back).
func TestDisableHugePages(t *testing.T) {
	if err := disableHugePages(); err != nil {
		t.Fatal(err)
	}
	on, err := unix.PrctlRetInt(unix.PR_GET_THP_DISABLE, 0, 0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if on != 1 {
		t.Errorf("PR_GET_THP_DISABLE = %d after disableHugePages, want 1", on)
	}
}
