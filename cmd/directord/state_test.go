package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestReplaceConfigFile: a rollback replaces the file the path names (a
// symbolic link is followed and stays a link), keeps the replaced file as
// FILE.bak-TIME with its content and mode, writes the new one with the old
// mode, and leaves a file that already holds the content alone.
func TestReplaceConfigFile(t *testing.T) {
	dir := t.TempDir()
	real := filepath.Join(dir, "managed", "directord.yaml")
	if err := os.MkdirAll(filepath.Dir(real), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real, []byte("version: 5\n"), 0o640); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "directord.yaml")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 6, 3, 4, 5, 0, time.UTC)
	file, backup, err := replaceConfigFile(link, []byte("version: 4\n"), now)
	if err != nil {
		t.Fatal(err)
	}
	if file != real || backup != real+".bak-20261206T030405.000Z" {
		t.Errorf("wrote %s, backup %s", file, backup)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&os.ModeSymlink == 0 {
		t.Errorf("the symbolic link was replaced by a file (%v)", err)
	}
	for path, want := range map[string]string{link: "version: 4\n", backup: "version: 5\n"} {
		if got, _ := os.ReadFile(path); string(got) != want {
			t.Errorf("%s holds %q, want %q", path, got, want)
		}
	}
	for _, path := range []string{real, backup} {
		if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
			t.Errorf("%s has mode %v, want the original 0640", path, fi.Mode().Perm())
		}
	}
	// The same content again: nothing written, no backup.
	file, backup, err = replaceConfigFile(link, []byte("version: 4\n"), now.Add(time.Hour))
	if err != nil || file != real || backup != "" {
		t.Errorf("rewriting the same content: file %s backup %q err %v", file, backup, err)
	}
	names, _ := filepath.Glob(filepath.Join(filepath.Dir(real), "*"))
	if len(names) != 2 {
		t.Errorf("files next to the configuration: %v, want it and one backup (no temporary file left)", names)
	}
	// Something that is not a regular file is left alone.
	if _, _, err := replaceConfigFile(dir, []byte("x"), now); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("replacing a directory: %v", err)
	}
}
