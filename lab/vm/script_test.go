package vm

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// TestCommandScriptQuotesEverything runs the generated cmd.sh with the host's
// /bin/sh (the guest runs the same one) on hostile arguments, environment and
// folder names, and checks exactly what the program received.
func TestCommandScriptQuotesEverything(t *testing.T) {
	dir := filepath.Join(t.TempDir(), `it's a "dir" $x`)
	if err := os.Mkdir(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	prog := `printf '[%s]\n' "$@"; printf 'PWD=%s\n' "$PWD"; printf 'FOO=[%s]\n' "$FOO"; printf 'HOME=[%s]\n' "$HOME"`
	argv := []string{"/bin/sh", "-c", prog, "sh", `it's`, "two words", "$HOME", "new\nline", "", "`id`"}
	env := []string{"FOO=a 'b' $c \\ \"d\"", "PATH=/usr/bin:/bin"}
	script, err := commandScript(dir, env, argv)
	if err != nil {
		t.Fatalf("commandScript: %v", err)
	}
	path := filepath.Join(t.TempDir(), "cmd.sh")
	if err := os.WriteFile(path, []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("/bin/sh", path)
	cmd.Env = []string{"HOME=/should-not-leak"}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("sh cmd.sh: %v\n%s\nscript:\n%s", err, out, script)
	}
	want := "[it's]\n[two words]\n[$HOME]\n[new\nline]\n[]\n[`id`]\n" +
		"PWD=" + dir + "\n" + "FOO=[a 'b' $c \\ \"d\"]\n" + "HOME=[]\n"
	if diff := cmp.Diff(want, string(out)); diff != "" {
		t.Errorf("program saw (-want +got):\n%s", diff)
	}
}

func TestCommandScriptMissingDirExits126(t *testing.T) {
	script, err := commandScript("/nonexistent/vm-test", []string{"PATH=/bin"}, []string{"true"})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "cmd.sh")
	os.WriteFile(path, []byte(script), 0o644)
	out, err := exec.Command("/bin/sh", path).CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 126 {
		t.Fatalf("exit = %v, want status 126; output %s", err, out)
	}
	if !strings.Contains(string(out), "cannot enter working directory /nonexistent/vm-test") {
		t.Errorf("output %q does not name the folder", out)
	}
}

func TestCommandScriptRejects(t *testing.T) {
	tests := []struct {
		name string
		dir  string
		env  []string
		argv []string
	}{
		{"no command", "/", nil, nil},
		{"empty command", "/", nil, []string{""}},
		{"command with =", "/", nil, []string{"A=b"}},
		{"env without =", "/", []string{"FOO"}, []string{"true"}},
		{"env with empty key", "/", []string{"=x"}, []string{"true"}},
		{"relative dir", "work", nil, []string{"true"}},
	}
	for _, tc := range tests {
		if _, err := commandScript(tc.dir, tc.env, tc.argv); err == nil {
			t.Errorf("%s: commandScript succeeded, want an error", tc.name)
		}
	}
}

func TestInitScriptIsValidShellAndLoadsInOrder(t *testing.T) {
	mods := []Module{
		{Name: "crc32c_intel", Path: "kernel/arch/x86/crypto/crc32c-intel.ko", Optional: true},
		{Name: "libcrc32c", Path: "kernel/lib/libcrc32c.ko"},
	}
	s := initScript(mods)
	if strings.Contains(s, "%!") {
		t.Fatalf("init script has a formatting error:\n%s", s)
	}
	var loads []string
	for _, l := range strings.Split(s, "\n") {
		if strings.HasPrefix(l, "load ") {
			loads = append(loads, l)
		}
	}
	want := []string{
		"load 'kernel/arch/x86/crypto/crc32c-intel.ko' 'crc32c_intel' optional",
		"load 'kernel/lib/libcrc32c.ko' 'libcrc32c' required",
	}
	if diff := cmp.Diff(want, loads); diff != "" {
		t.Errorf("load lines (-want +got):\n%s", diff)
	}
	for _, must := range []string{markerReady, markerFail, "VMRUNNER-END %s %d", "msize=512000", "/tmp/mounts", "/tmp/runskel", "cp /ctl/mounts /ctl/runskel /tmp/", "poweroff -f"} {
		if !strings.Contains(s, must) {
			t.Errorf("init script lacks %q", must)
		}
	}
	path := filepath.Join(t.TempDir(), "init")
	os.WriteFile(path, []byte(s), 0o755)
	for _, sh := range [][]string{{"/bin/sh", "-n", path}, {"/bin/busybox", "sh", "-n", path}} {
		if out, err := exec.Command(sh[0], sh[1:]...).CombinedOutput(); err != nil {
			t.Errorf("%s: %v\n%s", strings.Join(sh, " "), err, out)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/mine", "A=1", "A=2", "EMPTY="}, map[string]string{"PATH": "/default", "HOME": "/root"})
	want := []string{"A=2", "EMPTY=", "HOME=/root", "PATH=/mine"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("mergeEnv (-want +got):\n%s", diff)
	}
}

func TestMountsFileAndRunSkeleton(t *testing.T) {
	mounts := mountsFile([]Share{{Host: "/h/a", Guest: "/g/a"}, {Host: "/h/b", Guest: "/h/b", ReadOnly: true}})
	if want := "share0 /g/a rw\nshare1 /h/b ro\n"; mounts != want {
		t.Errorf("mountsFile = %q, want %q", mounts, want)
	}
	skel := runSkeleton([]runEntry{
		{Name: "frr", Dir: true, Mode: 0o755, UID: 106, GID: 110},
		{Name: "postgresql", Dir: true, Mode: 0o2775, UID: 105, GID: 107},
		{Name: "shm", Target: "/dev/shm"},
		{Name: "has space", Dir: true, Mode: 0o755},
		{Name: "file"},
	})
	want := "d 755 106 110 frr\nd 2775 105 107 postgresql\nl /dev/shm shm\n"
	if skel != want {
		t.Errorf("runSkeleton = %q, want %q", skel, want)
	}
}
