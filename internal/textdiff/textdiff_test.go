package textdiff

import (
	"math/rand/v2"
	"strings"
	"testing"
)

// TestUnified matches GNU diff -u on the same files (hunks closer than
// twice the context merge).
func TestUnified(t *testing.T) {
	a := "director:\n  name: d1\n  hold_down: 1s\nservices:\n  - name: web\n    port: 80\n    backends:\n      - { address: 10.0.2.21 }\n      - { address: 10.0.2.22 }\n"
	b := "director:\n  name: d1\n  hold_down: 2s\nservices:\n  - name: web\n    port: 80\n    backends:\n      - { address: 10.0.2.21 }\n      - { address: 10.0.2.22 }\n      - { address: 10.0.2.23 }\n"
	want := `--- v1
+++ v2
@@ -1,9 +1,10 @@
 director:
   name: d1
-  hold_down: 1s
+  hold_down: 2s
 services:
   - name: web
     port: 80
     backends:
       - { address: 10.0.2.21 }
       - { address: 10.0.2.22 }
+      - { address: 10.0.2.23 }
`
	if got := Unified("v1", "v2", a, b); got != want {
		t.Errorf("got:\n%s\nwant:\n%s", got, want)
	}
	if got := Unified("a", "b", a, a); got != "" {
		t.Errorf("equal texts: %q", got)
	}
}

// lcs is the textbook dynamic program, for checking minimality.
func lcs(a, b []string) int {
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				d[i][j] = d[i+1][j+1] + 1
			} else {
				d[i][j] = max(d[i+1][j], d[i][j+1])
			}
		}
	}
	return d[0][0]
}

// TestDiffIsMinimalAndReconstructs: on random texts, the diff turns a into
// b and keeps as many lines as the longest common subsequence.
func TestDiffIsMinimalAndReconstructs(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "b", "c", "d", "e"}
	for range 2000 {
		a := make([]string, r.IntN(12))
		b := make([]string, r.IntN(12))
		for i := range a {
			a[i] = words[r.IntN(len(words))]
		}
		for i := range b {
			b[i] = words[r.IntN(len(words))]
		}
		lines := diff(a, b)
		var gotA, gotB []string
		kept := 0
		for _, l := range lines {
			if l.Op != Insert {
				gotA = append(gotA, l.Text)
			}
			if l.Op != Delete {
				gotB = append(gotB, l.Text)
			}
			if l.Op == Keep {
				kept++
			}
		}
		if strings.Join(gotA, ",") != strings.Join(a, ",") || strings.Join(gotB, ",") != strings.Join(b, ",") {
			t.Fatalf("diff of %v and %v does not reconstruct them: %v", a, b, lines)
		}
		if want := lcs(a, b); kept != want {
			t.Fatalf("diff of %v and %v keeps %d lines, the LCS is %d", a, b, kept, want)
		}
	}
}

// TestHunkLineNumbers: each hunk's header counts match its lines, and the
// numbers point at the right lines of both files.
func TestHunkLineNumbers(t *testing.T) {
	var a, b []string
	for i := range 100 {
		a = append(a, "line"+string(rune('A'+i%26))+strings.Repeat("x", i))
		b = append(b, a[i])
	}
	b[10] = "changed"
	b = append(b[:50], b[52:]...)
	b = append(b, "tail")
	hunks := Hunks(diff(a, b), 3)
	if len(hunks) != 3 {
		t.Fatalf("%d hunks, want 3", len(hunks))
	}
	for _, h := range hunks {
		ai, bi := h.A-1, h.B-1
		for _, l := range h.Lines {
			switch l.Op {
			case Keep:
				if a[ai] != l.Text || b[bi] != l.Text {
					t.Fatalf("%s: context %q is not line %d/%d", h.Header(), l.Text, ai+1, bi+1)
				}
				ai, bi = ai+1, bi+1
			case Delete:
				if a[ai] != l.Text {
					t.Fatalf("%s: deleted %q is not a's line %d", h.Header(), l.Text, ai+1)
				}
				ai++
			case Insert:
				if b[bi] != l.Text {
					t.Fatalf("%s: inserted %q is not b's line %d", h.Header(), l.Text, bi+1)
				}
				bi++
			}
		}
		if ai-(h.A-1) != h.ALen || bi-(h.B-1) != h.BLen {
			t.Errorf("%s counts %d/%d lines", h.Header(), ai-(h.A-1), bi-(h.B-1))
		}
	}
}

// TestLargeFilesStayBounded: two unrelated large files are reported as
// replaced instead of running for long.
func TestLargeFilesStayBounded(t *testing.T) {
	var a, b []string
	for i := range 20000 {
		a = append(a, "a"+string(rune(i)))
		b = append(b, "b"+string(rune(i)))
	}
	if got := len(diff(a, b)); got != 40000 {
		t.Errorf("%d lines, want every line removed and added", got)
	}
}
