package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
)

// Error is one problem in a configuration file, located precisely enough for an
// operator to fix it without reading the code: the file, the line, the field
// path (services[0].backends[1].address) and, where it helps, a hint.
type Error struct {
	// File is the name the configuration was loaded under ("" for bytes with no name).
	File string
	// Line is the 1-based line of the offending key or value; 0 means the error
	// concerns the whole file (it is empty, or the parser could not say where).
	Line int
	// Path is the field path, "yaml" for syntax errors and "document" for
	// problems with the file as a whole.
	Path string
	// Msg says what is wrong.
	Msg string
	// Hint says how to fix it; "" when the message says it all.
	Hint string
}

// Paths of errors that do not belong to one field.
const (
	// PathSyntax is the Path of a YAML syntax error.
	PathSyntax = "yaml"
	// PathDocument is the Path of an error about the whole document (empty,
	// several documents, not a mapping).
	PathDocument = "document"
)

// Error formats e as "file:line: path: message (hint: ...)", the form compilers
// use, so editors and CI logs can jump to the line.
func (e *Error) Error() string {
	var b strings.Builder
	switch {
	case e.File != "" && e.Line > 0:
		b.WriteString(e.File + ":" + strconv.Itoa(e.Line) + ": ")
	case e.File != "":
		b.WriteString(e.File + ": ")
	case e.Line > 0:
		b.WriteString("line " + strconv.Itoa(e.Line) + ": ")
	}
	if e.Path != "" {
		b.WriteString(e.Path + ": ")
	}
	b.WriteString(e.Msg)
	if e.Hint != "" {
		b.WriteString(" (hint: " + e.Hint + ")")
	}
	return b.String()
}

// hintf sets e's hint and returns e, so a check can add one where it reports.
// A nil e (a suppressed report) stays nil.
func (e *Error) hintf(format string, args ...any) *Error {
	if e == nil {
		return nil
	}
	e.Hint = fmt.Sprintf(format, args...)
	return e
}

// Errors is every problem found in one configuration, sorted by line. Loading
// returns all of them at once so an operator fixes a file in one pass.
type Errors []*Error

// Error prints one error per line.
func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Unwrap exposes the single errors to errors.Is and errors.As, so a caller
// can take the first *Error out of any error chain that holds Errors.
func (es Errors) Unwrap() []error {
	out := make([]error, len(es))
	for i, e := range es {
		out[i] = e
	}
	return out
}

// sorted returns es ordered by line (file-level errors first), keeping the
// order of discovery within a line, without exact duplicates (an anchor
// expanded twice reports its own problems once per path, not once per use).
func (es Errors) sorted() Errors {
	type key struct {
		line      int
		path, msg string
	}
	seen := make(map[key]bool, len(es))
	out := make(Errors, 0, len(es))
	for _, e := range es {
		k := key{e.Line, e.Path, e.Msg}
		if seen[k] {
			continue
		}
		seen[k] = true
		out = append(out, e)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Line < out[j].Line })
	return out
}
