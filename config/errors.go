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
	// omitted is set on the last entry of a load that found more than
	// maxErrors errors: how many it counted without recording them.
	omitted int
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
	e.Hint = fmt.Sprintf(format, clipArgs(args)...)
	return e
}

// Errors is every problem found in one configuration, sorted by line. Loading
// returns all of them at once so an operator fixes a file in one pass.
type Errors []*Error

// MaxShown is how many errors Errors.Error prints before it summarizes the
// rest: logs, reload events and API answers carry that text, and a broken
// file of tens of thousands of errors must not make them megabytes long
// (a Watch client with gRPC's default 4 MiB limit would then fail).
// `directord check-config` prints every recorded error.
const MaxShown = 20

// Error prints one error per line, at most MaxShown of them, then how many
// more there are.
func (es Errors) Error() string {
	shown := min(len(es), MaxShown)
	lines := make([]string, shown, shown+1)
	for i, e := range es[:shown] {
		lines[i] = e.Error()
	}
	if more := es.count() - shown; more > 0 {
		lines = append(lines, fmt.Sprintf("... and %d more errors (directord check-config FILE lists them)", more))
	}
	return strings.Join(lines, "\n")
}

// count is the number of errors found, including those counted but not
// recorded.
func (es Errors) count() int {
	n := len(es)
	if n > 0 && es[n-1].omitted > 0 {
		n += es[n-1].omitted - 1
	}
	return n
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
