//go:build linux && vm

package compare

import (
	"context"
	"os"
	"strings"
	"testing"
)

// TestVMWriteCounterArmsOnce checks what keeps the counter from patching
// kernel text while daemons run (newWriteCounter): kprobe jump optimization
// is off, a second counter with the same prefix reuses the armed kprobes
// instead of failing, and both count an IPVS write made with ipvsadm.
func TestVMWriteCounterArmsOnce(t *testing.T) {
	if os.Getenv("VM_GUEST") != "1" {
		t.Skip("runs inside the VM: make test-vm")
	}
	ctx := context.Background()
	first, err := newWriteCounter("bcarm")
	if err != nil {
		t.Fatal(err)
	}
	second, err := newWriteCounter("bcarm")
	if err != nil {
		t.Fatalf("a second counter with the same prefix: %v", err)
	}
	if b, err := os.ReadFile(kprobeOptimization); err == nil && strings.TrimSpace(string(b)) != "0" {
		t.Errorf("%s is %q, want 0: optimized kprobes are patched again later, from a kernel worker", kprobeOptimization, strings.TrimSpace(string(b)))
	}
	w0, err := second.read()
	if err != nil {
		t.Fatal(err)
	}
	const svc = "198.51.100.77:8080"
	if err := run(ctx, "ipvsadm", "-A", "-t", svc, "-s", "rr"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = run(ctx, "ipvsadm", "-D", "-t", svc) })
	for name, c := range map[string]*writeCounter{"first": first, "second": second} {
		w1, err := c.read()
		if err != nil {
			t.Fatal(err)
		}
		if d := w1.Sub(w0); d.AddService != 1 || d.Commands != 1 {
			t.Errorf("%s counter: one ipvsadm -A counted as %s, want 1 service added in 1 command", name, d)
		}
	}
}
