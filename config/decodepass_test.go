package config

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/google/go-cmp/cmp"
	yaml "go.yaml.in/yaml/v3"
)

// TestQuickPassAgreesWithFullPass: on every test file, the quick decoding
// pass notes a problem exactly when the full pass reports one, records
// nothing itself, and decodes a file without problems to the same raw
// configuration as the full pass. A problem the quick pass missed would go
// unreported, since Parse then skips the full pass.
func TestQuickPassAgreesWithFullPass(t *testing.T) {
	files, err := filepath.Glob("testdata/*/*.yaml")
	if err != nil || len(files) < 50 {
		t.Fatalf("%d test files (%v)", len(files), err)
	}
	problems := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		root, perr := parseYAML(f, data)
		if perr != nil || root.Kind != yaml.MappingNode {
			continue
		}
		nodes := countNodes(root)
		quickReport, fullReport := newReport(f), newReport(f)
		quickReport.root, fullReport.root = root, root
		var quickRaw, fullRaw rawConfig
		quick := newDecoder(quickReport, nodes, false)
		quick.mapping(root, reflect.ValueOf(&quickRaw).Elem(), "")
		newDecoder(fullReport, nodes, true).mapping(root, reflect.ValueOf(&fullRaw).Elem(), "")
		if quick.problem != (len(fullReport.errs) > 0) {
			t.Errorf("%s: quick pass problem %v, full pass errors %v", f, quick.problem, fullReport.errs)
		}
		if len(quickReport.errs) > 0 || quickReport.lines != nil || len(quickReport.bad) > 0 {
			t.Errorf("%s: the quick pass recorded errors %v, lines %v, bad paths %v", f, quickReport.errs, quickReport.lines, quickReport.bad)
		}
		if quick.problem {
			problems++
		} else if d := cmp.Diff(fullRaw, quickRaw); d != "" {
			t.Errorf("%s: quick pass decoded differently (-full +quick):\n%s", f, d)
		}
	}
	if problems == 0 {
		t.Error("no test file has a decoding problem: the comparison covers only clean files")
	}
}

// TestKeySet: a mapping's keys are found, with their lines, both while the
// set looks through them and once it indexes them.
func TestKeySet(t *testing.T) {
	var s keySet
	for i := range 3 * keySetScan {
		key := fmt.Sprintf("k%d", i)
		if _, dup := s.line(key); dup {
			t.Fatalf("%s found before it was added", key)
		}
		s.add(pair{key: key, k: &yaml.Node{Line: 100 + i}})
		for j := 0; j <= i; j++ {
			if l, ok := s.line(fmt.Sprintf("k%d", j)); !ok || l != 100+j {
				t.Fatalf("after %d keys, k%d: line %d, %v; want %d", i+1, j, l, ok, 100+j)
			}
		}
	}
	if len(s.out) != 3*keySetScan {
		t.Errorf("%d pairs, want %d", len(s.out), 3*keySetScan)
	}
}
