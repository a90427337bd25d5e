package config

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// hasError reports whether err holds a config Error whose text contains
// want (all of them are searched, not only the ones Error prints).
func hasError(err error, want string) bool {
	var errs Errors
	if !errors.As(err, &errs) {
		return false
	}
	for _, e := range errs {
		if strings.Contains(e.Error(), want) {
			return true
		}
	}
	return false
}

// loadWithin runs Load and fails the test if it does not return within d:
// a read that blocks must fail the test, not hang it.
func loadWithin(t *testing.T, path string, d time.Duration) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := Load(path)
		done <- err
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(d):
		t.Fatalf("Load(%s) still blocks after %s", path, d)
		return nil
	}
}

// TestLoadRefusesSpecialFiles: a FIFO (which blocked the read forever), a
// directory and a device are refused at once with what they are.
func TestLoadRefusesSpecialFiles(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.yaml")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ path, want string }{
		{fifo, "it is a named pipe (FIFO), not a regular file"},
		{dir, "it is a directory, not a regular file"},
		{"/dev/zero", "it is a device, not a regular file"},
	} {
		err := loadWithin(t, c.path, 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Load(%s) = %v, want %q", c.path, err, c.want)
		}
	}
}

// TestLoadContextDeadline: LoadContext gives up when its context ends.
func TestLoadContextDeadline(t *testing.T) {
	path := filepath.Join(t.TempDir(), "c.yaml")
	if err := os.WriteFile(path, []byte("director: { name: d1 }\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := LoadContext(ctx, path)
	// The read may win the race with the cancelled context; either answer is
	// fine, but a cancelled read must say so.
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("LoadContext with a cancelled context: %v", err)
	}
}

// TestLoadTooLarge: a file over maxFileSize is refused without parsing.
func TestLoadTooLarge(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.yaml")
	data := []byte("director: { name: d1 }\n# " + strings.Repeat("x", maxFileSize) + "\n")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
	err := loadWithin(t, path, 30*time.Second)
	if err == nil || !strings.Contains(err.Error(), "larger than 8 MiB") {
		t.Errorf("Load = %.300v, want larger than 8 MiB", err)
	}
	if _, err := Parse("big.yaml", data); !hasError(err, "larger than the 8 MiB") {
		t.Errorf("Parse = %.300v, want larger than the 8 MiB", err)
	}
}

// manyErrors returns a file with n services that each have three errors.
func manyErrors(n int) []byte {
	var b strings.Builder
	b.WriteString("director: { name: d1 }\nservices:\n")
	for range n {
		b.WriteString("  - { name: '', vip: x, port: 0 }\n")
	}
	return []byte(b.String())
}

// TestErrorsBounded: a file with 60,000 errors records at most maxErrors of
// them plus a count of the rest, and prints MaxShown plus a summary, so
// logs, events and API answers stay small.
func TestErrorsBounded(t *testing.T) {
	var one Errors
	if _, err := Parse("one.yaml", manyErrors(1)); !errors.As(err, &one) || len(one) == 0 {
		t.Fatalf("one bad service: %v", err)
	}
	const services = 20000
	total := services * len(one)
	_, err := Parse("many.yaml", manyErrors(services))
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %T, want Errors", err)
	}
	if len(errs) != maxErrors+1 {
		t.Errorf("%d errors recorded, want %d and a summary", len(errs), maxErrors)
	}
	last := errs[len(errs)-1]
	if last.Path != PathDocument || !strings.Contains(last.Msg, "more errors are not listed") {
		t.Errorf("last entry %q, want the count of the errors not listed", last)
	}
	if errs.count() != total {
		t.Errorf("count() = %d, want %d", errs.count(), total)
	}
	text := err.Error()
	if n := strings.Count(text, "\n"); n != MaxShown {
		t.Errorf("Error() has %d lines, want %d errors and a summary:\n%s", n+1, MaxShown, text)
	}
	if want := fmt.Sprintf("... and %d more errors", total-MaxShown); !strings.Contains(text, want) {
		t.Errorf("Error() lacks %q:\n%s", want, text)
	}
	if len(text) > 4096 {
		t.Errorf("Error() is %d bytes, want at most 4 KiB", len(text))
	}
}

// hostileFiles returns inputs at the bounds that cost the parser the most
// per byte: the largest number of values Parse accepts in flow and block
// form, many mapping keys, tens of thousands of errors, aliases expanded to
// the visit limit, and one huge scalar.
func hostileFiles() map[string]string {
	head := "director: { name: d1 }\n"
	flow := head + "services: [" + strings.Repeat("0,", maxValues-10) + "0]\n"
	block := head + "services:\n" + strings.Repeat("- 0\n", maxValues-10)
	var keys strings.Builder
	keys.WriteString(head + "ipvs:\n  sysctls:\n")
	for i := range maxValues / 2 {
		fmt.Fprintf(&keys, "    k%d: 1\n", i)
	}
	var alias strings.Builder
	alias.WriteString(head + "services:\n  - &s { name: a, vip: 198.18.0.10, port: 80, backends: [&x { address: 10.0.2.21 }")
	alias.WriteString(strings.Repeat(", *x", 20000))
	alias.WriteString("] }\n")
	alias.WriteString(strings.Repeat("  - *s\n", 20000))
	return map[string]string{
		"flow":    flow,
		"block":   block,
		"keys":    keys.String(),
		"errors":  string(manyErrors(maxFileSize / 40)),
		"aliases": alias.String(),
		"scalar":  head + "log: { level: \"" + strings.Repeat("x", maxFileSize-100) + "\" }\n",
		"toolong": head + "services: [" + strings.Repeat("0,", maxFileSize/2-40) + "0]\n",
	}
}

// TestParseBounds parses each hostile file in a child process and bounds
// its peak memory (the child's maximum resident set) and its time. Before
// the bounds, an 8 MiB list of zeros took 4.6 GB and 90 s.
func TestParseBounds(t *testing.T) {
	if testing.Short() {
		t.Skip("parses several large files")
	}
	const (
		maxRSS  = 400 << 20
		maxTime = 30 * time.Second // generous: the machine is shared
	)
	dir := t.TempDir()
	// The child is built without the race detector, whose own memory and
	// time would swamp what is measured.
	child := filepath.Join(dir, "parsechild")
	if out, err := exec.Command("go", "build", "-o", child, "./testdata/parsechild").CombinedOutput(); err != nil {
		t.Fatalf("build the child: %v\n%s", err, out)
	}
	for name, data := range hostileFiles() {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(child, path)
		start := time.Now()
		out, err := cmd.CombinedOutput()
		took := time.Since(start)
		if err != nil || strings.HasPrefix(string(out), "loaded") {
			t.Errorf("%s: the child failed or loaded the file: %v\n%.2000s", name, err, out)
			continue
		}
		var first string
		var kib int64
		if _, err := fmt.Sscanf(lastLine(string(out)), "VmHWM: %d kB", &kib); err != nil {
			t.Errorf("%s: no peak memory in the child's output: %v\n%.2000s", name, err, out)
			continue
		}
		first, _, _ = strings.Cut(string(out), "\n")
		rss := kib << 10
		t.Logf("%s: %.1f MiB file, peak RSS %d MiB, %s: %.200s", name, float64(len(data))/(1<<20), rss>>20,
			took.Round(time.Millisecond), first)
		if rss > maxRSS {
			t.Errorf("%s: peak RSS %d MiB, want at most %d MiB", name, rss>>20, maxRSS>>20)
		}
		if took > maxTime {
			t.Errorf("%s: took %s, want at most %s", name, took, maxTime)
		}
	}
}

// lastLine returns the last non-empty line of s.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
