package vm

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// cacheMaxAge is how long an unused kernel, package or initramfs stays in
// the cache. Runs touch what they use, so only leftovers of replaced kernels
// and old module sets go.
const cacheMaxAge = 14 * 24 * time.Hour

// touch marks cache files as used now; errors only mean earlier pruning.
func touch(paths ...string) {
	now := time.Now()
	for _, p := range paths {
		os.Chtimes(p, now, now)
	}
}

// pruneCache removes, from a cache laid out as <kver>/{vmlinuz,vmlinux,
// initrd-*} and debs/*.deb, every initramfs (with its manifest), kernel
// folder and package not touched for maxAge, except those in keep. It
// returns what it removed.
func pruneCache(cacheDir string, keep map[string]bool, maxAge time.Duration, now time.Time) []string {
	old := func(p string) bool {
		st, err := os.Stat(p)
		return err == nil && now.Sub(st.ModTime()) > maxAge && !keep[p]
	}
	var removed []string
	remove := func(p string) {
		if err := os.RemoveAll(p); err == nil {
			removed = append(removed, p)
		}
	}
	kdirs, _ := filepath.Glob(filepath.Join(cacheDir, "*", "vmlinuz"))
	for _, vmlinuz := range kdirs {
		kdir := filepath.Dir(vmlinuz)
		if !keep[kdir] && old(vmlinuz) {
			remove(kdir)
			continue
		}
		initrds, _ := filepath.Glob(filepath.Join(kdir, "initrd-*.cpio.gz"))
		for _, ir := range initrds {
			if old(ir) {
				remove(ir)
				remove(strings.TrimSuffix(ir, ".cpio.gz") + ".json")
			}
		}
	}
	debs, _ := filepath.Glob(filepath.Join(cacheDir, "debs", "*.deb"))
	for _, d := range debs {
		if old(d) {
			remove(d)
		}
	}
	return removed
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return err
	}
	return writeFileAtomic(dst, data)
}

func writeFileAtomic(dst string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(dst), ".tmp-"+filepath.Base(dst))
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), dst)
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// lockFile takes an exclusive flock on p, polling so that ctx can cancel the wait.
func lockFile(ctx context.Context, p string) (func(), error) {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open lock %s: %w", p, err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			return func() { f.Close() }, nil
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", p, err)
		}
		select {
		case <-ctx.Done():
			f.Close()
			return nil, fmt.Errorf("waiting for the VM cache lock %s: %w", p, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}
