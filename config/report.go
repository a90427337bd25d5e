package config

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	yaml "go.yaml.in/yaml/v3"
)

// report collects the problems of one file and remembers where every field
// was written, so the validation stage can place its errors on a line by field
// path alone.
type report struct {
	file string
	// lines maps a field path to the line of its key (or list item); nil
	// until lineOf first needs it (recordLines builds it from root).
	lines map[string]int
	root  *yaml.Node
	// bad holds the paths that already have an error, so that a value which
	// failed to decode is not reported again as missing.
	bad   map[string]bool
	errs  Errors
	warns Errors
	// dropped counts the errors found after maxErrors were recorded: a file
	// with tens of thousands of problems must not cost megabytes to report.
	dropped int
}

// maxErrors bounds the errors one load records (the rest are only counted,
// see report.result): far more than anyone reads, far less than a broken
// multi-megabyte file can produce.
const maxErrors = 1000

func newReport(file string) *report {
	return &report{file: file, bad: make(map[string]bool)}
}

// errAt records an error at an explicit line. A problem with the top-level
// mapping itself (a bad key or merge there) is reported under PathDocument.
func (r *report) errAt(line int, path, format string, args ...any) *Error {
	if path == "" {
		path = PathDocument
	}
	r.bad[path] = true
	if len(r.errs) >= maxErrors {
		r.dropped++
		return nil
	}
	e := &Error{File: r.file, Line: line, Path: path, Msg: fmt.Sprintf(format, clipArgs(args)...)}
	r.errs = append(r.errs, e)
	return e
}

// maxQuoted bounds how much of a value a message quotes: a multi-megabyte
// string must not make every error that names it as large. It is longer
// than the lists of valid keys that hints quote.
const maxQuoted = 512

// clipArgs shortens long string arguments of a message to maxQuoted bytes
// (at a character boundary) followed by "...".
func clipArgs(args []any) []any {
	for i, a := range args {
		s, ok := a.(string)
		if !ok || len(s) <= maxQuoted {
			continue
		}
		cut := maxQuoted
		for cut > 0 && !utf8.RuneStart(s[cut]) {
			cut--
		}
		out := slices.Clone(args)
		out[i] = s[:cut] + "..."
		args = out
	}
	return args
}

// failedLoad reports whether any error was found.
func (r *report) failedLoad() bool {
	return len(r.errs) > 0
}

// result returns the recorded errors sorted by line, followed, when some were
// only counted, by one file-level entry that says how many more there are.
func (r *report) result() Errors {
	out := r.errs.sorted()
	if r.dropped > 0 {
		out = append(out, &Error{File: r.file, Path: PathDocument,
			Msg:  fmt.Sprintf("%d more errors are not listed", r.dropped),
			Hint: "fix the ones above first; this file may not be a configuration at all", omitted: r.dropped})
	}
	return out
}

// failed reports whether path or one of its ancestors already has an error.
func (r *report) failed(path string) bool {
	for {
		if r.bad[path] {
			return true
		}
		if path == "" {
			return false
		}
		path = parentPath(path)
	}
}

// errf records an error at the line where path (or its nearest written
// ancestor, for a missing field) appears.
func (r *report) errf(path, format string, args ...any) *Error {
	if len(r.errs) >= maxErrors {
		return r.errAt(0, path, format)
	}
	return r.errAt(r.lineOf(path), path, format, args...)
}

// warnf records a problem that does not stop the load.
func (r *report) warnf(path, format string, args ...any) *Error {
	if len(r.warns) >= maxErrors {
		return nil
	}
	e := &Error{File: r.file, Line: r.lineOf(path), Path: path, Msg: fmt.Sprintf(format, clipArgs(args)...)}
	r.warns = append(r.warns, e)
	return e
}

// lineOf finds the line of path, walking up to the nearest ancestor written in
// the file: a missing field is reported where its parent is.
func (r *report) lineOf(path string) int {
	if r.lines == nil && r.root != nil {
		r.recordLines()
	}
	for {
		if l, ok := r.lines[path]; ok {
			return l
		}
		if path == "" {
			return 0
		}
		path = parentPath(path)
	}
}

// parentPath strips the last element of a field path ("a.b[2]" -> "a.b",
// "a.b" -> "a", "a" -> ""). The result is always shorter than p.
func parentPath(p string) string {
	if strings.HasSuffix(p, "]") {
		if i := strings.LastIndexByte(p, '['); i >= 0 {
			return p[:i]
		}
	}
	if i := strings.LastIndexByte(p, '.'); i >= 0 {
		return p[:i]
	}
	return ""
}

// fieldPath appends a mapping key to a path, quoting keys that are not plain
// names so the path stays unambiguous.
func fieldPath(base, key string) string {
	if !isPlainKey(key) {
		return base + "[" + strconv.Quote(key) + "]"
	}
	if base == "" {
		return key
	}
	return base + "." + key
}

func indexPath(base string, i int) string {
	return base + "[" + strconv.Itoa(i) + "]"
}

func isPlainKey(k string) bool {
	if k == "" {
		return false
	}
	for _, c := range k {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// closest returns the candidate within edit distance 2 of s (the likely typo),
// or "".
func closest(s string, candidates []string) string {
	best, bestD := "", 3
	for _, c := range candidates {
		if d := editDistance(s, c); d < bestD {
			best, bestD = c, d
		}
	}
	return best
}

// editDistance is the optimal string alignment distance (Levenshtein plus
// transpositions, the commonest typo: "paht" is one edit from "path"),
// bounded to short keys.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 64
	}
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
