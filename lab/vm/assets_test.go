package vm

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseKernelDepends(t *testing.T) {
	tests := []struct {
		name, out, want string
		wantErr         bool
	}{
		{"bookworm", "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n", "linux-image-6.1.0-56-amd64", false},
		{"alternatives", "linux-image-amd64\n |Depends: linux-image-6.12.9-amd64\n  Depends: linux-image-6.12.8-amd64\n", "linux-image-6.12.9-amd64", false},
		{"other depends first", "linux-image-amd64\n  Depends: initramfs-tools\n  Depends: linux-image-6.1.0-56-amd64\n", "linux-image-6.1.0-56-amd64", false},
		{"stale lists", "W: Unable to locate package\n", "", true},
	}
	for _, tc := range tests {
		got, err := parseKernelDepends([]byte(tc.out))
		if (err != nil) != tc.wantErr || got != tc.want {
			t.Errorf("%s: parseKernelDepends = %q, %v; want %q (error %v)", tc.name, got, err, tc.want, tc.wantErr)
		}
	}
}

func TestInitrdKeyChangesWithInputs(t *testing.T) {
	base := initrdKey("6.1.0-56-amd64", []ModuleRequest{{Name: "ip_vs"}}, []byte("bb"))
	if again := initrdKey("6.1.0-56-amd64", []ModuleRequest{{Name: "ip_vs"}}, []byte("bb")); again != base {
		t.Fatalf("initrdKey is not deterministic: %s vs %s", base, again)
	}
	for name, k := range map[string]string{
		"kernel":    initrdKey("6.1.0-57-amd64", []ModuleRequest{{Name: "ip_vs"}}, []byte("bb")),
		"modules":   initrdKey("6.1.0-56-amd64", []ModuleRequest{{Name: "ip_vs"}, {Name: "veth"}}, []byte("bb")),
		"ifpresent": initrdKey("6.1.0-56-amd64", []ModuleRequest{{Name: "ip_vs", IfPresent: true}}, []byte("bb")),
		"busybox":   initrdKey("6.1.0-56-amd64", []ModuleRequest{{Name: "ip_vs"}}, []byte("bb2")),
	} {
		if k == base {
			t.Errorf("changing the %s keeps the initramfs key %s", name, k)
		}
	}
}

func TestCheckBusybox(t *testing.T) {
	if _, err := checkBusybox("/bin/busybox"); err != nil {
		t.Errorf("busybox-static rejected: %v (install busybox-static: bash scripts/deps.sh)", err)
	}
	if _, err := checkBusybox("/bin/ls"); err == nil || !strings.Contains(err.Error(), "dynamically linked") {
		t.Errorf("dynamic binary: error %v, want one saying it is dynamically linked", err)
	}
	notELF := filepath.Join(t.TempDir(), "busybox")
	os.WriteFile(notELF, []byte("#!/bin/sh\n"), 0o755)
	if _, err := checkBusybox(notELF); err == nil {
		t.Errorf("a shell script was accepted as busybox")
	}
	if _, err := checkBusybox(filepath.Join(t.TempDir(), "missing")); err == nil || !strings.Contains(err.Error(), "busybox-static") {
		t.Errorf("missing busybox: error %v, want one naming busybox-static", err)
	}
}

func TestDefaultCacheDir(t *testing.T) {
	t.Setenv("VM_CACHE_DIR", "/custom/cache")
	if got := DefaultCacheDir(); got != "/custom/cache" {
		t.Errorf("with VM_CACHE_DIR: %s", got)
	}
	t.Setenv("VM_CACHE_DIR", "")
	// Tests run in lab/vm; the module root is two levels up.
	wd, _ := os.Getwd()
	want := filepath.Join(filepath.Dir(filepath.Dir(wd)), "lab", ".cache", "vm")
	if got := DefaultCacheDir(); got != want {
		t.Errorf("DefaultCacheDir = %s, want %s", got, want)
	}
}

func TestLockFileExcludesAndHonoursContext(t *testing.T) {
	p := filepath.Join(t.TempDir(), "lock")
	unlock, err := lockFile(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := lockFile(ctx, p); err == nil {
		t.Fatalf("second lock taken while the first is held")
	}
	unlock()
	unlock2, err := lockFile(context.Background(), p)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlock2()
}
