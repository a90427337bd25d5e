package main

import (
	"bytes"
	"runtime"
	"strings"
	"testing"
)

// TestVersionCommand: `directorctl version` exists (it was an unknown
// command) and says the same as --version, without needing a daemon.
func TestVersionCommand(t *testing.T) {
	var outs []string
	for _, args := range [][]string{{"version"}, {"--version"}} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != exitOK {
			t.Fatalf("%v: exit %d: %s", args, code, errb.String())
		}
		for _, want := range []string{"directorctl v", "commit:", "built:", runtime.Version()} {
			if !strings.Contains(out.String(), want) {
				t.Errorf("%v: output %q lacks %q", args, out.String(), want)
			}
		}
		outs = append(outs, out.String())
	}
	if outs[0] != outs[1] {
		t.Errorf("version printed %q, --version %q", outs[0], outs[1])
	}
}
