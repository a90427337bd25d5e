package config

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	yaml "go.yaml.in/yaml/v3"
)

// yamlV3Root is the root node yaml.v3 builds for data, or nil.
func yamlV3Root(data []byte) *yaml.Node {
	var doc yaml.Node
	if err := yaml.NewDecoder(bytes.NewReader(data)).Decode(&doc); err != nil || len(doc.Content) == 0 {
		return nil
	}
	return doc.Content[0]
}

// treeDiff describes the first difference between two trees in what
// decode.go reads, or returns "".
func treeDiff(path string, got, want *yaml.Node) string {
	if got == nil || want == nil {
		return fmt.Sprintf("%s: node %v, yaml.v3 %v", path, got, want)
	}
	g := fmt.Sprintf("kind %d tag %s style %d value %q line %d column %d items %d",
		got.Kind, got.ShortTag(), got.Style, got.Value, got.Line, got.Column, len(got.Content))
	w := fmt.Sprintf("kind %d tag %s style %d value %q line %d column %d items %d",
		want.Kind, want.ShortTag(), want.Style, want.Value, want.Line, want.Column, len(want.Content))
	if g != w {
		return fmt.Sprintf("%s:\n  parsePlain %s\n  yaml.v3    %s", path, g, w)
	}
	for i := range got.Content {
		if d := treeDiff(fmt.Sprintf("%s/%d", path, i), got.Content[i], want.Content[i]); d != "" {
			return d
		}
	}
	return ""
}

// checkPlain fails the test when parsePlain accepts data and builds a tree
// other than yaml.v3's (or accepts what yaml.v3 refuses); it returns
// whether parsePlain accepted it.
func checkPlain(t *testing.T, name string, data []byte) bool {
	t.Helper()
	got, ok := parsePlain(data)
	if !ok {
		return false
	}
	if d := treeDiff("", got, yamlV3Root(data)); d != "" {
		t.Errorf("%s: parsePlain and yaml.v3 differ at %s", name, d)
	}
	return true
}

// TestParsePlainMatchesYAMLv3: on every file the tests hold (valid, broken,
// fuzz finds, the examples), the fast parser either declines or builds the
// tree yaml.v3 builds, lines and columns included; it takes the files of
// the benchmarks, so a reload of them skips yaml.v3.
func TestParsePlainMatchesYAMLv3(t *testing.T) {
	var files []string
	for _, g := range []string{"testdata/valid/*.yaml", "testdata/bad/*.yaml", "testdata/fuzz/FuzzParse/*", "../examples/*.yaml"} {
		m, err := filepath.Glob(g)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, m...)
	}
	taken := 0
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if checkPlain(t, f, data) {
			taken++
		}
	}
	if taken < len(files)/3 {
		t.Errorf("parsePlain took %d of %d files", taken, len(files))
	}
	for _, n := range []int{1, 100} {
		if !checkPlain(t, "large", largeConfig(n)) {
			t.Errorf("parsePlain declined largeConfig(%d)", n)
		}
	}
}

// TestParsePlainDeclines: what the subset does not cover goes to yaml.v3.
func TestParsePlainDeclines(t *testing.T) {
	for _, in := range []string{
		"a: &x 1\nb: *x\n",                 // anchors, aliases
		"a: !!str 1\n",                     // tags
		"a: |\n  text\n",                   // block scalars
		"a: one\n  two\n",                  // multi-line plain scalars
		"a: \"x\\ty\"\n",                   // escapes
		"a:\n\tb: 1\n",                     // tabs
		"a: é\n",                           // non-ASCII
		"---\na: 1\n",                      // document markers
		"a: 1\r\n",                         // CRLF
		"a:\n",                             // null values
		"a: [1,\n  2]\n",                   // multi-line flow
		"a: [1, 2, ]\n",                    // trailing commas
		"<<: {a: 1}\n",                     // merge keys
		"a: {b:1}\n",                       // flow keys without a space
		"- a\n",                            // a list at the root
		"a: 1\n b: 2\n",                    // bad indentation
		"a: b: c\n",                        // a syntax error
		"\"a\": 1\n",                       // quoted keys
		"a: 'x' y\n",                       // text after a quoted scalar
		"a:\n- b\n  c: 1\n",                // a list item continued
		"a: [x, {b: c}, [d]]\nb: {c: [d]}", // (covered: nested flow)
	} {
		_, ok := parsePlain([]byte(in))
		want := !strings.Contains(in, "[x, {b: c}")
		if ok == want {
			t.Errorf("parsePlain(%q) ok = %v, want %v", in, ok, !want)
		}
		checkPlain(t, in, []byte(in))
	}
}

// TestParsePlainTags: the tags parsePlain gives plain scalars are
// yaml.v3's.
func TestParsePlainTags(t *testing.T) {
	var b strings.Builder
	for i, v := range []string{"true", "False", "NULL", "~", "yes", "no", "on", "off", "y", "n", "0", "7", "010", "0x1F",
		"1_000", "-0", "-5", "+5", "1e3", ".5", ".inf", "-.inf", "123456789012345678", "1234567890123456789012",
		"10.0.0.1", "2001-12-14", "2s", "_x", "/healthz", "tcp", "Null", "nulls", "truex", "2001:db8::1",
		"1m30s", "500ms", "1.5s", "2e5s", "10.0.0.0/24", "0b101", "0o17", "0.0.0.0", "1.5", "12.5.1", "1:20", "190:20:30", "2001:DB8::A",
		"0x1F:2", "1-2", "0.5.", "1..2", "fe80::1", "10:20", "1_2.3.4"} {
		fmt.Fprintf(&b, "k%d: %s\n", i, v)
		if !strings.Contains(v, ":") { // a colon ends a plain scalar in [ ]
			fmt.Fprintf(&b, "l%d: [%s]\n", i, v)
		}
	}
	if !checkPlain(t, "tags", []byte(b.String())) {
		t.Errorf("parsePlain declined:\n%s", b.String())
	}
}

// FuzzParsePlain: whatever parsePlain accepts, yaml.v3 parses to the same
// tree.
func FuzzParsePlain(f *testing.F) {
	for _, g := range []string{"testdata/valid/*.yaml", "../examples/*.yaml"} {
		m, _ := filepath.Glob(g)
		for _, file := range m {
			data, err := os.ReadFile(file)
			if err != nil {
				f.Fatal(err)
			}
			f.Add(data)
		}
	}
	f.Add(largeConfig(3))
	f.Fuzz(func(t *testing.T, data []byte) { checkPlain(t, "fuzz", data) })
}
