package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// renderMan formats a page with man and returns the text and man's warnings.
func renderMan(t *testing.T, page []byte) (string, string) {
	t.Helper()
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man not installed")
	}
	path := filepath.Join(t.TempDir(), "page.8")
	if err := os.WriteFile(path, page, 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("man", "--warnings", "-l", path)
	cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8")
	var out, warn bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &warn
	if err := cmd.Run(); err != nil {
		t.Fatalf("man: %v\n%s", err, warn.String())
	}
	return out.String(), warn.String()
}

// TestManualPage: directord(8) names every command and every flag, and man
// renders it without a warning.
func TestManualPage(t *testing.T) {
	var page bytes.Buffer
	if err := writeManual(&page); err != nil {
		t.Fatal(err)
	}
	text, warnings := renderMan(t, page.Bytes())
	if warnings != "" {
		t.Errorf("man warnings:\n%s", warnings)
	}
	text = strings.ReplaceAll(text, "\u2010\n", "") // hyphenated line ends
	for _, c := range commands() {
		if !strings.Contains(text, c.name) {
			t.Errorf("directord(8) lacks the command %s", c.name)
		}
		for _, f := range flagNames(c) {
			if !strings.Contains(text, f) {
				t.Errorf("directord(8) lacks %s %s", c.name, f)
			}
		}
	}
}

// TestConfigManualPage: directord.yaml(5), rendered from the configuration
// reference, covers its sections and keys and renders without a warning.
func TestConfigManualPage(t *testing.T) {
	md, err := os.ReadFile("../../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var page bytes.Buffer
	if err := writeConfigManual(&page, string(md)); err != nil {
		t.Fatal(err)
	}
	text, warnings := renderMan(t, page.Bytes())
	if warnings != "" {
		t.Errorf("man warnings:\n%s", warnings)
	}
	for _, want := range []string{"DIRECTOR", "BGP", "SERVICES", "state_dir", "vip_binding", "password_file", "min_healthy"} {
		if !strings.Contains(text, want) {
			t.Errorf("directord.yaml(5) lacks %q", want)
		}
	}
	if strings.Contains(text, "```") || strings.Contains(text, "|---") || strings.Contains(text, `\fB`) {
		t.Errorf("Markdown or roff leaked into the rendered page")
	}
}

// TestCompletionScripts: each shell accepts its script, and bash completes
// commands, realserver's sub-commands and flags.
func TestCompletionScripts(t *testing.T) {
	dir := t.TempDir()
	for _, sh := range []struct{ name, check string }{{"bash", "-n"}, {"zsh", "-n"}, {"fish", "--no-execute"}} {
		var out, errb bytes.Buffer
		if code := run([]string{"completion", sh.name}, &out, &errb); code != exitOK {
			t.Fatalf("completion %s: exit %d: %s", sh.name, code, errb.String())
		}
		path := filepath.Join(dir, "directord."+sh.name)
		if err := os.WriteFile(path, out.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		if _, err := exec.LookPath(sh.name); err != nil {
			t.Logf("%s not installed; its script is not syntax-checked", sh.name)
			continue
		}
		if msg, err := exec.Command(sh.name, sh.check, path).CombinedOutput(); err != nil {
			t.Errorf("%s rejects its completion script: %v\n%s", sh.name, err, msg)
		}
	}
	for words, want := range map[string]string{
		"directord re":               "realserver",
		"directord realserver a":     "add apply",
		"directord router-config -f": "-flavor",
		"directord check-config -":   "-config -q",
	} {
		script := `source "$1"; read -ra COMP_WORDS <<< "$2"; [[ $2 == *" " ]] && COMP_WORDS+=(""); COMP_CWORD=$((${#COMP_WORDS[@]}-1)); _directord; echo "${COMPREPLY[*]}"`
		got, err := exec.Command("bash", "-c", script, "bash", filepath.Join(dir, "directord.bash"), words).Output()
		if err != nil || strings.TrimSpace(string(got)) != want {
			t.Errorf("bash completion of %q = %q (%v), want %q", words, strings.TrimSpace(string(got)), err, want)
		}
	}
}
