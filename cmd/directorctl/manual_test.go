package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// TestManualPage: directorctl(8), generated from the command tree, names
// every command and every flag, renders without a warning, and the hidden
// generator command stays out of the help.
func TestManualPage(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man not installed")
	}
	var page, errb bytes.Buffer
	if code := run([]string{"__man"}, &page, &errb); code != exitOK {
		t.Fatalf("__man: exit %d: %s", code, errb.String())
	}
	path := filepath.Join(t.TempDir(), "directorctl.8")
	if err := os.WriteFile(path, page.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("man", "--warnings", "-l", path)
	cmd.Env = append(os.Environ(), "MANWIDTH=200", "LC_ALL=C.UTF-8")
	var out, warn bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &warn
	if err := cmd.Run(); err != nil || warn.Len() > 0 {
		t.Fatalf("man: %v\n%s", err, warn.String())
	}
	text := out.String()
	root := newRoot(&bytes.Buffer{}, &bytes.Buffer{})
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		for _, sub := range c.Commands() {
			if sub.Hidden || sub.Name() == "help" {
				continue
			}
			if sub.Runnable() && !strings.Contains(text, strings.TrimPrefix(sub.CommandPath(), "directorctl ")) {
				t.Errorf("directorctl(8) lacks %s", sub.CommandPath())
			}
			sub.LocalNonPersistentFlags().VisitAll(func(f *pflag.Flag) {
				if f.Name != "help" && !strings.Contains(text, "--"+f.Name) {
					t.Errorf("directorctl(8) lacks %s --%s", sub.CommandPath(), f.Name)
				}
			})
			walk(sub)
		}
	}
	walk(root.Command)
	var help bytes.Buffer
	run([]string{"--help"}, &help, &help)
	if strings.Contains(help.String(), "__man") {
		t.Errorf("the hidden __man command shows in the help")
	}
}
