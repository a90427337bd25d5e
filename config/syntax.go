package config

import (
	"fmt"
	"strconv"
	"strings"
	"unicode/utf8"
)

// syntaxError turns a yaml.v3 parse error ("yaml: line 3: did not find
// expected key") into an Error with its line. Where the parser names no line
// or the wrong one (it reports a misplaced tab on the line before it, and
// encoding problems on no line at all), the line is found in data.
func syntaxError(name string, data []byte, err error) *Error {
	e := &Error{File: name, Path: PathSyntax, Msg: strings.TrimPrefix(err.Error(), "yaml: ")}
	if rest, ok := strings.CutPrefix(e.Msg, "line "); ok {
		if num, msg, ok := strings.Cut(rest, ": "); ok {
			if n, cerr := strconv.Atoi(num); cerr == nil && n > 0 {
				e.Line, e.Msg = n, msg
			}
		}
	}
	switch {
	case strings.HasPrefix(e.Msg, "unknown anchor '") && e.Line == 0:
		locateAnchor(e, data)
	case strings.Contains(e.Msg, "tab character") || strings.Contains(e.Msg, "cannot start any token"):
		locateTab(e, data)
	case e.Line == 0 && (strings.Contains(e.Msg, "UTF-8") || strings.Contains(e.Msg, "control characters")):
		locateBadChar(e, data)
	}
	return e
}

// locateAnchor places an unknown alias at its first use; the parser does
// not say where it is.
func locateAnchor(e *Error, data []byte) {
	rest := strings.TrimPrefix(e.Msg, "unknown anchor '")
	anchor, _, ok := strings.Cut(rest, "'")
	if !ok || anchor == "" {
		return
	}
	for i, l := range strings.Split(string(data), "\n") {
		if strings.Contains(l, "*"+anchor) {
			e.Line = i + 1
			break
		}
	}
	e.Hint = "define the anchor (&" + anchor + ") before its first use"
}

// locateTab moves a tab error to the first line, from the one the parser
// names on, that is indented with a tab: yaml.v3 names the line before a
// misindented one. The hint is given only when there is such a line, since
// "cannot start any token" also means characters such as '@' or '`'.
func locateTab(e *Error, data []byte) {
	lines := strings.Split(string(data), "\n")
	for i := max(e.Line-1, 0); i < len(lines); i++ {
		indent := lines[i][:len(lines[i])-len(strings.TrimLeft(lines[i], " \t"))]
		if strings.Contains(indent, "\t") {
			e.Line = i + 1
			e.Hint = "YAML does not allow tabs for indentation; indent with spaces"
			return
		}
	}
}

// locateBadChar finds the first byte sequence that is not UTF-8, or the
// first character YAML does not allow, and reports its line and column.
// A file in UTF-16 (with its byte order mark) is left to the parser.
func locateBadChar(e *Error, data []byte) {
	if len(data) >= 2 && (data[0] == 0xFF && data[1] == 0xFE || data[0] == 0xFE && data[1] == 0xFF) {
		return
	}
	line, col := 1, 1
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		switch {
		case r == utf8.RuneError && size <= 1:
			e.Line = line
			e.Msg = fmt.Sprintf("byte 0x%02x at column %d is not valid UTF-8", data[i], col)
			e.Hint = "save the file as UTF-8"
			return
		case !yamlAllowed(r):
			e.Line = line
			e.Msg = fmt.Sprintf("control character %U at column %d is not allowed in YAML", r, col)
			e.Hint = "remove it; quoted strings can spell it as an escape such as \\x01"
			return
		}
		if r == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i += size
	}
}

// yamlAllowed reports whether YAML 1.1 allows r in a document (the
// parser's "printable" set, which includes tab and line breaks).
func yamlAllowed(r rune) bool {
	return r == 0x09 || r == 0x0A || r == 0x0D || r >= 0x20 && r <= 0x7E || r == 0x85 ||
		r >= 0xA0 && r <= 0xD7FF || r >= 0xE000 && r <= 0xFFFD || r >= 0x10000 && r <= 0x10FFFF
}
