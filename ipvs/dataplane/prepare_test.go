package dataplane

import (
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
)

// TestPrepareOpensOnlyWithIPVS: with /proc/net/ip_vs, Prepare opens a
// kernel handle (moby/ipvs's one-time set-up) and closes it; without, it
// must not (moby/ipvs would resolve the netlink family as 0 for the rest of
// the process, and every later request would do nothing).
func TestPrepareOpensOnlyWithIPVS(t *testing.T) {
	present := filepath.Join(t.TempDir(), "ip_vs")
	if err := os.WriteFile(present, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		proc  string
		opens int32
	}{{present, 1}, {filepath.Join(t.TempDir(), "missing"), 0}} {
		var opens atomic.Int32
		f := newFakeKernel(t)
		<-Prepare(func(c *config) {
			c.procIPVS = tc.proc
			c.newKernel = func(string) (kernel, error) { opens.Add(1); return f, nil }
		})
		if got := opens.Load(); got != tc.opens {
			t.Errorf("Prepare with %s opened %d kernel handles, want %d", tc.proc, got, tc.opens)
		}
		if tc.opens > 0 && !f.closed {
			t.Errorf("Prepare with %s left its handle open", tc.proc)
		}
	}
}
