package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// TestCheckConfigAcceptsConfigFlag: check-config takes -config like run, and
// the file as an argument as before; both at once, or neither, is a usage error.
func TestCheckConfigAcceptsConfigFlag(t *testing.T) {
	const example = "../../examples/local.yaml"
	for _, args := range [][]string{{"-config", example}, {"-q", "-config", example}, {example}, {"-config=" + example}} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"check-config"}, args...), &out, &errb); code != exitOK {
			t.Errorf("check-config %v: exit %d: %s", args, code, errb.String())
		}
	}
	for _, args := range [][]string{{"-config", example, example}, {}, {"-q"}} {
		var out, errb bytes.Buffer
		if code := run(append([]string{"check-config"}, args...), &out, &errb); code != exitUsage {
			t.Errorf("check-config %v: exit %d, want %d", args, code, exitUsage)
		}
	}
}

// TestVersionForms: every spelling prints the same four facts.
func TestVersionForms(t *testing.T) {
	var first string
	for _, arg := range []string{"version", "--version", "-version"} {
		var out, errb bytes.Buffer
		if code := run([]string{arg}, &out, &errb); code != exitOK {
			t.Fatalf("%s: exit %d", arg, code)
		}
		got := out.String()
		for _, want := range []string{"directord v", "commit:", "built:", runtime.Version()} {
			if !strings.Contains(got, want) {
				t.Errorf("%s: output %q lacks %q", arg, got, want)
			}
		}
		if first == "" {
			first = got
		} else if got != first {
			t.Errorf("%s printed %q, version printed %q", arg, got, first)
		}
	}
}

func TestCheckConfigShowsSync(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"check-config", "../../config/testdata/valid/full.yaml"}, &out, &errb); code != exitOK {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	want := "ipvs sync: master and backup on eth1, sync id 42, group ff02::81 port 9000 ttl 2, max message 8000"
	if !strings.Contains(out.String(), want) {
		t.Errorf("check-config output lacks %q:\n%s", want, out.String())
	}
}
