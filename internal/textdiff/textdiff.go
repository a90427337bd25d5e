// Package textdiff computes line diffs of configuration files (Myers'
// O(ND) algorithm) and renders them as unified-diff hunks, for the
// console's history view and for `directorctl configs diff`.
package textdiff

import (
	"fmt"
	"strings"
)

// maxEdits bounds the work on two very different files: beyond this many
// changed lines the whole middle is reported as replaced.
const maxEdits = 2000

// Op is what happens to a line.
type Op byte

// The line operations, as in a unified diff.
const (
	Keep   Op = ' '
	Delete Op = '-'
	Insert Op = '+'
)

// Line is one line of a diff.
type Line struct {
	Op   Op     `json:"op"`
	Text string `json:"text"`
}

// MarshalText renders an Op as its one-character string in JSON.
func (o Op) MarshalText() ([]byte, error) { return []byte{byte(o)}, nil }

// UnmarshalText reads an Op written by MarshalText.
func (o *Op) UnmarshalText(b []byte) error {
	if len(b) != 1 || (b[0] != byte(Keep) && b[0] != byte(Delete) && b[0] != byte(Insert)) {
		return fmt.Errorf("diff operation %q: want \" \", \"-\" or \"+\"", b)
	}
	*o = Op(b[0])
	return nil
}

// Hunk is a run of changes with context, as in a unified diff.
type Hunk struct {
	// A and B are the first lines (1-based) of the hunk in each file;
	// ALen and BLen how many lines of each it covers.
	A     int    `json:"a"`
	ALen  int    `json:"a_len"`
	B     int    `json:"b"`
	BLen  int    `json:"b_len"`
	Lines []Line `json:"lines"`
}

// Header is the hunk's "@@ -a,n +b,m @@" line.
func (h Hunk) Header() string {
	return fmt.Sprintf("@@ -%d,%d +%d,%d @@", h.A, h.ALen, h.B, h.BLen)
}

// Lines diffs two texts line by line.
func Lines(a, b string) []Line {
	return diff(split(a), split(b))
}

// Hunks groups a diff into hunks with context lines of context around
// each change; equal texts give none.
func Hunks(lines []Line, context int) []Hunk {
	var out []Hunk
	ai, bi := 1, 1 // line numbers of lines[i] in each file
	i := 0
	for i < len(lines) {
		if lines[i].Op == Keep {
			ai, bi, i = ai+1, bi+1, i+1
			continue
		}
		start := max(0, i-context)
		h := Hunk{A: ai - (i - start), B: bi - (i - start)}
		end := i
		for j := i; j < len(lines); j++ {
			if lines[j].Op != Keep {
				end = j
			} else if j-end > 2*context {
				break
			}
		}
		stop := min(len(lines), end+context+1)
		for _, l := range lines[start:stop] {
			h.Lines = append(h.Lines, l)
			if l.Op != Insert {
				h.ALen++
			}
			if l.Op != Delete {
				h.BLen++
			}
		}
		for _, l := range lines[i:stop] {
			if l.Op != Insert {
				ai++
			}
			if l.Op != Delete {
				bi++
			}
		}
		i = stop
		out = append(out, h)
	}
	return out
}

// Unified renders a unified diff of a and b named nameA and nameB with 3
// lines of context; "" when they are equal.
func Unified(nameA, nameB, a, b string) string {
	hunks := Hunks(Lines(a, b), 3)
	if len(hunks) == 0 {
		return ""
	}
	var s strings.Builder
	fmt.Fprintf(&s, "--- %s\n+++ %s\n", nameA, nameB)
	for _, h := range hunks {
		s.WriteString(h.Header() + "\n")
		for _, l := range h.Lines {
			s.WriteByte(byte(l.Op))
			s.WriteString(l.Text + "\n")
		}
	}
	return s.String()
}

func split(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(strings.TrimSuffix(s, "\n"), "\n")
}

// diff trims the common prefix and suffix, then runs Myers on the middle.
func diff(a, b []string) []Line {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var out []Line
	for _, l := range a[:pre] {
		out = append(out, Line{Keep, l})
	}
	out = append(out, myers(a[pre:len(a)-suf], b[pre:len(b)-suf])...)
	for _, l := range a[len(a)-suf:] {
		out = append(out, Line{Keep, l})
	}
	return out
}

// myers finds a shortest edit script; beyond maxEdits it gives up and
// replaces a with b.
func myers(a, b []string) []Line {
	n, m := len(a), len(b)
	if n == 0 && m == 0 {
		return nil
	}
	limit := min(n+m, maxEdits)
	off := limit + 1
	v := make([]int, 2*limit+3)
	var trace [][]int
	for d := 0; d <= limit; d++ {
		trace = append(trace, append([]int(nil), v[off-d-1:off+d+2]...))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[off+k-1] < v[off+k+1]) {
				x = v[off+k+1]
			} else {
				x = v[off+k-1] + 1
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[off+k] = x
			if x >= n && y >= m {
				return backtrack(a, b, trace, d)
			}
		}
	}
	return replaceAll(a, b)
}

// backtrack walks the saved frontiers back from (n, m) to build the script.
// trace[d] holds v[-d-1 .. d+1] as it was before step d.
func backtrack(a, b []string, trace [][]int, dEnd int) []Line {
	x, y := len(a), len(b)
	var rev []Line
	for d := dEnd; d > 0; d-- {
		at := func(k int) int { return trace[d][k+d+1] }
		k := x - y
		var pk int
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			pk = k + 1
		} else {
			pk = k - 1
		}
		px := at(pk)
		py := px - pk
		for x > px && y > py {
			x, y = x-1, y-1
			rev = append(rev, Line{Keep, a[x]})
		}
		if x == px {
			y--
			rev = append(rev, Line{Insert, b[y]})
		} else {
			x--
			rev = append(rev, Line{Delete, a[x]})
		}
	}
	for x > 0 && y > 0 {
		x, y = x-1, y-1
		rev = append(rev, Line{Keep, a[x]})
	}
	out := make([]Line, len(rev))
	for i, l := range rev {
		out[len(rev)-1-i] = l
	}
	return out
}

func replaceAll(a, b []string) []Line {
	out := make([]Line, 0, len(a)+len(b))
	for _, l := range a {
		out = append(out, Line{Delete, l})
	}
	for _, l := range b {
		out = append(out, Line{Insert, l})
	}
	return out
}
