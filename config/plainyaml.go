package config

import (
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// parsePlain builds the node tree of the YAML a configuration is usually
// written in, as yaml.v3 would build it, several times faster: block
// mappings and lists indented with spaces, one-line flow mappings and lists
// ({ address: 10.0.0.1, weight: 1 }, [a, b]), plain and quoted one-line
// scalars, comments. At 100 services under emulation yaml.v3 took a quarter
// of a second of every reload. Anything else (anchors, aliases, tags, block
// or multi-line scalars, escapes, tabs, non-ASCII text, document markers,
// and every syntax error) returns ok false, and the caller parses the file
// with yaml.v3, so what a file means and every error it gets are yaml.v3's.
// The tree carries what decode.go reads: Kind, Tag (or Style for quoted
// scalars), Value, Line, Column and Content.
func parsePlain(data []byte) (root *yaml.Node, ok bool) {
	p := plainParser{src: string(data)}
	if !p.split() || len(p.lines) == 0 {
		return nil, false
	}
	first := p.lines[0]
	if p.isSeqEntry(first) {
		return nil, false
	}
	root = p.block(first.indent)
	if p.failed || p.i != len(p.lines) || root == nil || root.Kind != yaml.MappingNode {
		return nil, false
	}
	return root, true
}

// plainParser holds the file's content lines and the position in them.
type plainParser struct {
	src    string
	lines  []plainLine
	i      int // the next line
	failed bool
	nodes  []yaml.Node // allocated in blocks: one allocation per 256 nodes
	// stack holds the children of the collections being parsed, innermost
	// last; a finished collection's children move to an exact-size Content
	// cut from contents, allocated in blocks too, instead of growing each
	// Content by appending (a third of the parser's allocations).
	stack    []*yaml.Node
	contents []*yaml.Node
}

// plainLine is one line with content: its number, indentation and text
// (after the indentation, comments kept).
type plainLine struct {
	num, indent int
	text        string
}

// split cuts src into content lines, skipping blank and comment lines. It
// refuses what the subset does not cover anywhere in a line: tabs, carriage
// returns, control and non-ASCII characters, document markers and
// directives.
func (p *plainParser) split() bool {
	src := p.src
	for num := 1; len(src) > 0; num++ {
		end := strings.IndexByte(src, '\n')
		line := src
		if end >= 0 {
			line, src = src[:end], src[end+1:]
		} else {
			src = ""
		}
		for i := 0; i < len(line); i++ {
			if c := line[i]; c < 0x20 || c >= 0x7F {
				return false
			}
		}
		text := strings.TrimLeft(line, " ")
		if text == "" || text[0] == '#' {
			continue
		}
		if strings.HasPrefix(line, "---") || strings.HasPrefix(line, "...") || line[0] == '%' {
			return false
		}
		p.lines = append(p.lines, plainLine{num: num, indent: len(line) - len(text), text: text})
	}
	return true
}

// node allocates a node.
func (p *plainParser) node(kind yaml.Kind, tag string, line, col int) *yaml.Node {
	if len(p.nodes) == cap(p.nodes) {
		p.nodes = make([]yaml.Node, 0, 256)
	}
	p.nodes = p.nodes[:len(p.nodes)+1] // zeroed by make
	n := &p.nodes[len(p.nodes)-1]
	n.Kind, n.Tag, n.Line, n.Column = kind, tag, line, col
	return n
}

// push adds a child to the collection being parsed.
func (p *plainParser) push(child *yaml.Node) {
	p.stack = append(p.stack, child)
}

// children returns the children pushed since the stack had depth start,
// and removes them from the stack.
func (p *plainParser) children(start int) []*yaml.Node {
	k := len(p.stack) - start
	if k == 0 {
		return nil
	}
	out := append(reserve(&p.contents, k, 1024), p.stack[start:]...)
	clear(p.stack[start:])
	p.stack = p.stack[:start]
	return out
}

// isSeqEntry reports whether l starts a list item ("- " or a lone "-").
func (p *plainParser) isSeqEntry(l plainLine) bool {
	return l.text[0] == '-' && (len(l.text) == 1 || l.text[1] == ' ')
}

// block parses the mapping or list whose lines start at indent.
func (p *plainParser) block(indent int) *yaml.Node {
	if p.isSeqEntry(p.lines[p.i]) {
		return p.sequence(indent)
	}
	return p.mapping(indent)
}

// sequence parses list items at indent.
func (p *plainParser) sequence(indent int) *yaml.Node {
	l := p.lines[p.i]
	n := p.node(yaml.SequenceNode, "!!seq", l.num, indent+1)
	start := len(p.stack)
	for !p.failed && p.i < len(p.lines) {
		l := p.lines[p.i]
		if l.indent < indent || (l.indent == indent && !p.isSeqEntry(l)) {
			break // the parent's next key
		}
		if l.indent > indent {
			p.failed = true
			break
		}
		rest := strings.TrimLeft(l.text[1:], " ")
		if rest == "" || rest[0] == '#' {
			p.failed = true // an item on the lines below, or null
			break
		}
		// The item's text starts a line of its own at its column: a mapping
		// ("- name: x" and the keys under it) or a single value.
		col := indent + len(l.text) - len(rest)
		p.lines[p.i] = plainLine{num: l.num, indent: col, text: rest}
		if _, _, isKey := p.keyOf(rest); isKey {
			p.push(p.mapping(col))
		} else {
			p.push(p.inlineValue(col))
		}
	}
	n.Content = p.children(start)
	return n
}

// mapping parses keys at indent.
func (p *plainParser) mapping(indent int) *yaml.Node {
	l := p.lines[p.i]
	n := p.node(yaml.MappingNode, "!!map", l.num, indent+1)
	start := len(p.stack)
	for !p.failed && p.i < len(p.lines) {
		l := p.lines[p.i]
		if l.indent < indent || (l.indent == indent && p.isSeqEntry(l)) {
			break
		}
		key, rest, isKey := p.keyOf(l.text)
		if l.indent > indent || !isKey {
			p.failed = true
			break
		}
		k := p.node(yaml.ScalarNode, plainTag(key), l.num, indent+1)
		k.Value = key
		if k.Tag == "" || k.Tag == "!!merge" {
			p.failed = true // a key yaml.v3 resolves otherwise (a number, <<)
			break
		}
		p.push(k)
		if rest == "" || rest[0] == '#' {
			p.push(p.nested(indent))
			continue
		}
		col := indent + len(l.text) - len(rest)
		p.lines[p.i] = plainLine{num: l.num, indent: col, text: rest}
		p.push(p.inlineValue(indent))
	}
	n.Content = p.children(start)
	return n
}

// nested parses the value of a key with nothing after its colon: a block
// on the lines below, more indented, or a list at the key's own indent.
func (p *plainParser) nested(indent int) *yaml.Node {
	p.i++
	if p.i < len(p.lines) {
		next := p.lines[p.i]
		if next.indent > indent || (next.indent == indent && p.isSeqEntry(next)) {
			return p.block(next.indent)
		}
	}
	p.failed = true // null: yaml.v3 places it where the next token starts
	return nil
}

// keyOf splits "key: rest" (or "key:" at the end of the line); isKey is
// false for anything else, including quoted or complex keys.
func (p *plainParser) keyOf(text string) (key, rest string, isKey bool) {
	if text[0] == '"' || text[0] == '\'' || text[0] == '{' || text[0] == '[' || isIndicator(text[0]) {
		return "", "", false
	}
	for i := 0; i < len(text); i++ {
		switch text[i] {
		case ':':
			if i+1 == len(text) || text[i+1] == ' ' {
				key = strings.TrimRight(text[:i], " ")
				return key, strings.TrimLeft(text[i+1:], " "), key != ""
			}
		case '#':
			if i > 0 && text[i-1] == ' ' {
				return "", "", false
			}
		}
	}
	return "", "", false
}

// inlineValue parses the value that starts the current line's text (a
// scalar or a one-line flow collection) and moves to the next line, which
// must not be more indented than parent: a more indented one would
// continue a multi-line scalar.
func (p *plainParser) inlineValue(parent int) *yaml.Node {
	l := p.lines[p.i]
	v, rest := p.flowValue(l, 0, false)
	if v == nil || !isComment(rest) {
		p.failed = true
		return nil
	}
	p.i++
	if p.i < len(p.lines) && p.lines[p.i].indent > parent {
		p.failed = true
	}
	return v
}

// flowValue parses one value at offset off of l's text, inside a flow
// collection when inFlow, and returns it with the text after it (spaces
// skipped). nil means the subset does not cover it.
func (p *plainParser) flowValue(l plainLine, off int, inFlow bool) (*yaml.Node, string) {
	text := l.text[off:]
	col := l.indent + off + 1
	switch {
	case text == "":
		return nil, ""
	case text[0] == '{' || text[0] == '[':
		return p.flowCollection(l, off)
	case text[0] == '"' || text[0] == '\'':
		return p.quoted(l, off)
	case isIndicator(text[0]) || text[0] == '-' && (len(text) == 1 || text[1] == ' '):
		return nil, ""
	}
	end := plainEnd(text, inFlow)
	value := strings.TrimRight(text[:end], " ")
	tag := plainTag(value)
	if value == "" || tag == "!!merge" {
		return nil, ""
	}
	n := p.node(yaml.ScalarNode, tag, l.num, col)
	n.Value = value
	return n, strings.TrimLeft(text[end:], " ")
}

// plainEnd is where a plain scalar at the start of text ends: a comment,
// a ": " (which would make it a key), or in a flow collection one of ",:[]{}".
func plainEnd(text string, inFlow bool) int {
	for i := 0; i < len(text); i++ {
		c := text[i]
		switch {
		case c == '#' && i > 0 && text[i-1] == ' ':
			return i
		case c == ':' && (i+1 == len(text) || text[i+1] == ' ' || inFlow):
			return i
		case inFlow && (c == ',' || c == '[' || c == ']' || c == '{' || c == '}'):
			return i
		}
	}
	return len(text)
}

// quoted parses a one-line quoted scalar without escapes (a doubled quote in single
// quotes is one).
func (p *plainParser) quoted(l plainLine, off int) (*yaml.Node, string) {
	text := l.text[off:]
	q := text[0]
	var value string
	end := -1
	for i := 1; i < len(text); i++ {
		if text[i] == '\\' && q == '"' {
			return nil, ""
		}
		if text[i] != q {
			continue
		}
		if q == '\'' && i+1 < len(text) && text[i+1] == '\'' {
			i++
			continue
		}
		end = i
		break
	}
	if end < 0 {
		return nil, ""
	}
	value = text[1:end]
	style := yaml.DoubleQuotedStyle
	if q == '\'' {
		style = yaml.SingleQuotedStyle
		value = strings.ReplaceAll(value, "''", "'")
	}
	n := p.node(yaml.ScalarNode, "!!str", l.num, l.indent+off+1)
	n.Value, n.Style = value, style
	return n, strings.TrimLeft(text[end+1:], " ")
}

// flowCollection parses a flow mapping or list that closes on its line.
func (p *plainParser) flowCollection(l plainLine, off int) (*yaml.Node, string) {
	open := l.text[off]
	kind, tag, closer := yaml.SequenceNode, "!!seq", byte(']')
	if open == '{' {
		kind, tag, closer = yaml.MappingNode, "!!map", '}'
	}
	n := p.node(kind, tag, l.num, l.indent+off+1)
	n.Style = yaml.FlowStyle
	pos := off + 1
	rest := func() string { return l.text[pos:] }
	skip := func() { pos = len(l.text) - len(strings.TrimLeft(rest(), " ")) }
	skip()
	if strings.HasPrefix(rest(), string(closer)) {
		return n, strings.TrimLeft(rest()[1:], " ")
	}
	start := len(p.stack)
	for {
		v, after := p.flowValue(l, pos, true)
		if v == nil {
			return nil, ""
		}
		pos = len(l.text) - len(after)
		p.push(v)
		if kind == yaml.MappingNode {
			if v.Kind != yaml.ScalarNode || !strings.HasPrefix(after, ": ") {
				return nil, ""
			}
			pos += 2
			skip()
			if v, after = p.flowValue(l, pos, true); v == nil {
				return nil, ""
			}
			pos = len(l.text) - len(after)
			p.push(v)
		}
		switch {
		case strings.HasPrefix(after, string(closer)):
			n.Content = p.children(start)
			return n, strings.TrimLeft(after[1:], " ")
		case strings.HasPrefix(after, ","):
			pos++
			skip()
			if r := rest(); r == "" || r[0] == closer || r[0] == ',' {
				return nil, "" // a trailing or empty entry
			}
		default:
			return nil, ""
		}
	}
}

// isIndicator reports whether c starts something other than a plain
// scalar (an anchor, alias, tag, block scalar, directive, reserved
// character, or a complex key or mapping value).
func isIndicator(c byte) bool {
	return strings.IndexByte("&*!|>%@`?:,]}#", c) >= 0
}

// isComment reports whether what is left of a line is nothing or a comment.
func isComment(rest string) bool { return rest == "" || rest[0] == '#' }

// plainTag is the tag yaml.v3 resolves a plain scalar to, for the forms
// whose resolution is certain: words (a string unless one of YAML's null
// or boolean spellings) and decimal integers; "" leaves it to yaml.v3
// (Node.ShortTag resolves an empty tag the same way the parser does).
func plainTag(v string) string {
	switch v {
	case "true", "True", "TRUE", "false", "False", "FALSE":
		return "!!bool"
	case "null", "Null", "NULL", "~":
		return "!!null"
	case "<<":
		return "!!merge"
	}
	c := v[0]
	switch {
	case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_' || c == '/':
		return "!!str"
	case c != '-' && isPlainDecimal(v) && len(v) <= 18:
		return "!!int"
	case isAddressLike(v) || isDurationLike(v):
		return "!!str"
	}
	return ""
}

// isAddressLike reports whether v is digits and dots (at least two) and
// slashes, such as an IPv4 address or prefix, or hex digits, dots and
// colons with a colon, such as an IPv6 address: no integer, float or
// timestamp yaml.v3 resolves looks like either.
func isAddressLike(v string) bool {
	dots, colons := 0, 0
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c == '.':
			dots++
		case c == ':':
			colons++
		case c >= '0' && c <= '9', c == '/' && colons == 0:
		case (c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F') && colons > 0:
		default:
			return false
		}
	}
	return colons > 0 || dots >= 2
}

// isDurationLike reports whether v starts with 1 to 9 and is digits, dots
// and letters other than e and E, with a letter, such as "2s" or "1m30s":
// not a number in any base yaml.v3 reads (no 0x, 0b or 0o prefix, no
// exponent), nor a timestamp.
func isDurationLike(v string) bool {
	if v[0] < '1' || v[0] > '9' {
		return false
	}
	letter := false
	for i := 0; i < len(v); i++ {
		switch c := v[i]; {
		case c >= '0' && c <= '9', c == '.':
		case c == 'e' || c == 'E':
			return false
		case c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z':
			letter = true
		default:
			return false
		}
	}
	return letter
}
