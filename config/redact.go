package config

import (
	"bytes"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// redacted replaces a secret's value in Redact's output.
const redacted = `"<redacted>"`

// secretKeys are the keys whose values are secrets: BGP MD5 passwords, SMTP
// passwords and webhook signing secrets. (The *_file keys name files, which
// are not secret.)
var secretKeys = map[string]bool{"password": true, "secret": true}

// Redact returns a configuration file's text with the value of every secret
// key replaced by "<redacted>", keeping everything else (comments, layout,
// line numbers) as written, so the result can be shown and diffed by people
// who may not see the secrets. A file that does not parse is returned with
// every line that mentions a secret key blanked after the key.
func Redact(data []byte) []byte {
	var root yaml.Node
	lines := bytes.SplitAfter(data, []byte("\n"))
	if err := yaml.Unmarshal(data, &root); err != nil {
		return redactLines(lines)
	}
	var spans []span
	collectSecrets(&root, &spans)
	for i := len(spans) - 1; i >= 0; i-- { // right to left keeps earlier columns valid
		s := spans[i]
		if s.line < 1 || s.line > len(lines) {
			continue
		}
		l := lines[s.line-1]
		start := byteOffset(l, s.col)
		end := tokenEnd(l, start, s.node)
		if start < 0 || end < start {
			continue
		}
		lines[s.line-1] = append(append(append([]byte{}, l[:start]...), redacted...), l[end:]...)
		if s.node.Style == yaml.LiteralStyle || s.node.Style == yaml.FoldedStyle {
			blankBlock(lines[s.line:], s.keyCol)
		}
	}
	return bytes.Join(lines, nil)
}

// blankBlock empties the lines of a block scalar (those indented deeper
// than its key, and blank ones among them), keeping the line count.
func blankBlock(lines [][]byte, keyCol int) {
	for i, l := range lines {
		text := strings.TrimRight(string(l), "\r\n")
		indent := len(text) - len(strings.TrimLeft(text, " "))
		if strings.TrimSpace(text) != "" && indent < keyCol {
			return
		}
		if bytes.HasSuffix(l, []byte("\n")) {
			lines[i] = []byte("\n")
		} else {
			lines[i] = nil
		}
	}
}

// span is where a secret value starts (1-based line and column).
type span struct {
	line, col int
	node      *yaml.Node
	// keyCol is the key's column: a block scalar's lines are indented more.
	keyCol int
}

// collectSecrets walks the tree and records the values of secret keys, in
// document order (lines ascending, columns ascending within a line).
func collectSecrets(n *yaml.Node, out *[]span) {
	switch n.Kind {
	case yaml.DocumentNode, yaml.SequenceNode:
		for _, c := range n.Content {
			collectSecrets(c, out)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if secretKeys[k.Value] && v.Kind == yaml.ScalarNode {
				*out = append(*out, span{v.Line, v.Column, v, k.Column})
				continue
			}
			collectSecrets(v, out)
		}
	}
}

// byteOffset converts a 1-based column counted in runes into a byte offset.
func byteOffset(line []byte, col int) int {
	runes := 0
	for i := range string(line) {
		runes++
		if runes == col {
			return i
		}
	}
	return -1
}

// tokenEnd finds where the scalar starting at start ends on its line.
func tokenEnd(line []byte, start int, n *yaml.Node) int {
	rest := string(line[start:])
	switch n.Style {
	case yaml.DoubleQuotedStyle:
		for i := 1; i < len(rest); i++ {
			switch rest[i] {
			case '\\':
				i++
			case '"':
				return start + i + 1
			}
		}
	case yaml.SingleQuotedStyle:
		for i := 1; i < len(rest); i++ {
			if rest[i] == '\'' {
				if i+1 < len(rest) && rest[i+1] == '\'' {
					i++
					continue
				}
				return start + i + 1
			}
		}
	case yaml.LiteralStyle, yaml.FoldedStyle:
		return start + len(strings.TrimRight(rest, "\r\n"))
	default:
		if strings.HasPrefix(rest, n.Value) {
			return start + len(n.Value)
		}
	}
	return start + len(strings.TrimRight(rest, "\r\n"))
}

// redactLines is the fallback for a file that does not parse.
func redactLines(lines [][]byte) []byte {
	for i, l := range lines {
		for k := range secretKeys {
			if j := bytes.Index(l, []byte(k+":")); j >= 0 {
				nl := ""
				if bytes.HasSuffix(l, []byte("\n")) {
					nl = "\n"
				}
				lines[i] = append(append([]byte{}, l[:j+len(k)+1]...), " "+redacted+nl...)
			}
		}
	}
	return bytes.Join(lines, nil)
}
