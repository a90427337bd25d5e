package deploy

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestPackage builds the .deb with scripts/package.sh (what make package
// runs), checks it with lintian, installs it into an empty root with dpkg,
// and uses what it installed: both binaries' versions, check-config on the
// shipped example, the three manual pages, the completion scripts, the
// units and the monitoring kit. Removing and purging leave nothing behind.
func TestPackage(t *testing.T) {
	for _, tool := range []string{"dpkg-deb", "dpkg", "man"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed", tool)
		}
	}
	out := t.TempDir()
	build := exec.Command("bash", "../scripts/package.sh", out)
	build.Stderr = os.Stderr
	debPath, err := build.Output()
	if err != nil {
		t.Fatalf("scripts/package.sh: %v", err)
	}
	deb := strings.TrimSpace(string(debPath))

	if _, err := exec.LookPath("lintian"); err == nil {
		msg, err := exec.Command("lintian", "--fail-on", "error,warning", deb).CombinedOutput()
		if err != nil {
			t.Errorf("lintian: %v\n%s", err, msg)
		}
	} else {
		t.Log("lintian not installed: the package is not linted")
	}

	root := t.TempDir()
	for _, d := range []string{"var/lib/dpkg/info", "var/lib/dpkg/updates", "var/log"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(root, "var/lib/dpkg/status"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// The root is empty, so dpkg cannot satisfy Depends and cannot chroot
	// into it for the maintainer scripts, which do nothing under DPKG_ROOT.
	dpkg := func(args ...string) string {
		t.Helper()
		all := append([]string{"--root=" + root, "--force-script-chrootless", "--force-depends", "--force-not-root", "--no-triggers"}, args...)
		msg, err := exec.Command("dpkg", all...).CombinedOutput()
		if err != nil {
			t.Fatalf("dpkg %v: %v\n%s", args, err, msg)
		}
		return string(msg)
	}
	dpkg("-i", deb)
	in := func(p string) string { return filepath.Join(root, p) }

	for _, bin := range []string{"usr/sbin/directord", "usr/bin/directorctl"} {
		got, err := exec.Command(in(bin), "--version").Output()
		name := filepath.Base(bin)
		if err != nil || !strings.HasPrefix(string(got), name+" v") || !strings.Contains(string(got), "commit:") {
			t.Errorf("%s --version: %v %q", name, err, got)
		}
	}
	example := in("usr/share/doc/directord/examples/directord.yaml")
	if msg, err := exec.Command(in("usr/sbin/directord"), "check-config", "-config", example).CombinedOutput(); err != nil || !strings.Contains(string(msg), "valid") {
		t.Errorf("check-config of the shipped example: %v\n%s", err, msg)
	}
	for page, want := range map[string]string{
		"usr/share/man/man8/directord.8.gz":      "directord - Anycast Director daemon",
		"usr/share/man/man8/directorctl.8.gz":    "directorctl - Control a running directord",
		"usr/share/man/man5/directord.yaml.5.gz": "directord.yaml - configuration file",
	} {
		cmd := exec.Command("man", "--warnings", "-l", in(page))
		cmd.Env = append(os.Environ(), "MANWIDTH=100", "LC_ALL=C.UTF-8")
		var text, warn bytes.Buffer
		cmd.Stdout, cmd.Stderr = &text, &warn
		if err := cmd.Run(); err != nil || warn.Len() > 0 || !strings.Contains(text.String(), want) {
			t.Errorf("man %s: %v, warnings %q, lacks %q: %v", page, err, warn.String(), want, !strings.Contains(text.String(), want))
		}
	}
	for _, f := range []string{"directord", "directorctl"} {
		if msg, err := exec.Command("bash", "-n", in("usr/share/bash-completion/completions/"+f)).CombinedOutput(); err != nil {
			t.Errorf("bash completion for %s: %v\n%s", f, err, msg)
		}
		for _, p := range []string{"usr/share/zsh/vendor-completions/_" + f, "usr/share/fish/vendor_completions.d/" + f + ".fish"} {
			if st, err := os.Stat(in(p)); err != nil || st.Size() == 0 {
				t.Errorf("%s missing or empty: %v", p, err)
			}
		}
	}
	for _, p := range []string{"usr/lib/systemd/system/directord.service", "usr/lib/systemd/system/directord-realserver.service",
		"usr/lib/sysusers.d/directord.conf", "usr/share/directord/prometheus/rules.yml", "usr/share/directord/grafana/directord.json",
		"usr/share/doc/directord/copyright", "usr/share/doc/directord/examples/local.yaml"} {
		if _, err := os.Stat(in(p)); err != nil {
			t.Errorf("not installed: %s", p)
		}
	}
	for _, pair := range [][2]string{{"systemd/directord.service", "usr/lib/systemd/system/directord.service"},
		{"prometheus/rules.yml", "usr/share/directord/prometheus/rules.yml"}} {
		a, _ := os.ReadFile(pair[0])
		b, _ := os.ReadFile(in(pair[1]))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs from deploy/%s", pair[1], pair[0])
		}
	}

	dpkg("--purge", "directord")
	left, _ := exec.Command("find", in("usr"), "-type", "f").Output()
	if len(bytes.TrimSpace(left)) > 0 {
		t.Errorf("files left after purge:\n%s", left)
	}
}
