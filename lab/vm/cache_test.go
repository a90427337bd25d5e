package vm

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestPruneCacheRemovesOnlyOldUnkeptEntries(t *testing.T) {
	cache := t.TempDir()
	now := time.Now()
	old := now.Add(-30 * 24 * time.Hour)
	files := map[string]time.Time{
		"6.1.0-50-amd64/vmlinuz":                      old, // replaced kernel: whole folder goes
		"6.1.0-50-amd64/initrd-a.cpio.gz":             old,
		"6.1.0-56-amd64/vmlinuz":                      now,
		"6.1.0-56-amd64/initrd-cur.cpio.gz":           now,
		"6.1.0-56-amd64/initrd-cur.json":              now,
		"6.1.0-56-amd64/initrd-stale.cpio.gz":         old, // old module set: goes with its manifest
		"6.1.0-56-amd64/initrd-stale.json":            old,
		"6.1.0-56-amd64/initrd-kept.cpio.gz":          old, // old but in use by this run
		"debs/linux-image-6.1.0-50-amd64_1_amd64.deb": old,
		"debs/linux-image-6.1.0-56-amd64_1_amd64.deb": now,
	}
	for name, mtime := range files {
		p := filepath.Join(cache, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(p, mtime, mtime)
	}
	keep := map[string]bool{filepath.Join(cache, "6.1.0-56-amd64/initrd-kept.cpio.gz"): true}
	removed := pruneCache(cache, keep, 14*24*time.Hour, now)
	for i := range removed {
		removed[i], _ = filepath.Rel(cache, removed[i])
	}
	sort.Strings(removed)
	want := []string{
		"6.1.0-50-amd64",
		"6.1.0-56-amd64/initrd-stale.cpio.gz",
		"6.1.0-56-amd64/initrd-stale.json",
		"debs/linux-image-6.1.0-50-amd64_1_amd64.deb",
	}
	if diff := cmp.Diff(want, removed); diff != "" {
		t.Errorf("removed (-want +got):\n%s", diff)
	}
	for _, still := range []string{"6.1.0-56-amd64/initrd-kept.cpio.gz", "6.1.0-56-amd64/initrd-cur.json", "debs/linux-image-6.1.0-56-amd64_1_amd64.deb"} {
		if _, err := os.Stat(filepath.Join(cache, still)); err != nil {
			t.Errorf("%s was removed: %v", still, err)
		}
	}
}
