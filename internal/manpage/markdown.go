package manpage

import (
	"regexp"
	"strings"
	"sync"
)

// Markdown renders the subset of Markdown the project's docs use: headings
// (## becomes a section, ### a subsection; the # title is left out, the page
// has its own NAME), paragraphs, fenced code blocks, bullet and numbered
// lists, and tables. A table becomes a list of tagged paragraphs, one per
// row: the first cell is the tag, the middle cells "header: value", the last
// cell the text; that reads better on a terminal than a wide grid.
func (p *Page) Markdown(md string) {
	lines := strings.Split(md, "\n")
	for i := 0; i < len(lines); {
		l := lines[i]
		switch {
		case strings.TrimSpace(l) == "":
			i++
		case strings.HasPrefix(l, "# "):
			i++
		case strings.HasPrefix(l, "## "):
			p.Section(stripInline(strings.TrimPrefix(l, "## ")))
			i++
		case strings.HasPrefix(l, "### "):
			p.raw(".SS " + Inline(strings.TrimPrefix(l, "### ")) + "\n")
			i++
		case strings.HasPrefix(l, "```"):
			i = p.fence(lines, i)
		case strings.HasPrefix(l, "|"):
			i = p.table(lines, i)
		case bulletRE().MatchString(l):
			i = p.list(lines, i)
		default:
			i = p.paragraph(lines, i)
		}
	}
}

// The patterns are compiled on first use, not at package initialisation:
// directord links this package for its hidden __man command only, and
// every start of the daemon paid for the compiles (12 ms of its package
// initialisation in the VM, GODEBUG=inittrace=1).
var (
	bulletRE   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^(\s*)([-*]|\d+\.) `) })
	codeSpanRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile("`([^`]+)`") })
	boldRE     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\*\*([^*]+)\*\*`) })
	linkRE     = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`\[([^\]]+)\]\([^)]+\)`) })
)

// fence writes a fenced code block starting at lines[i].
func (p *Page) fence(lines []string, i int) int {
	var code []string
	for i++; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
		code = append(code, lines[i])
	}
	p.Code(code)
	return i + 1
}

// paragraph joins lines up to a blank line or another block.
func (p *Page) paragraph(lines []string, i int) int {
	var text []string
	for ; i < len(lines); i++ {
		l := lines[i]
		if strings.TrimSpace(l) == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "```") ||
			strings.HasPrefix(l, "|") || bulletRE().MatchString(l) {
			break
		}
		text = append(text, strings.TrimSpace(l))
	}
	p.raw(".PP\n" + line(Inline(strings.Join(text, " "))) + "\n")
	return i
}

// list writes consecutive list items; continuation lines join their item.
func (p *Page) list(lines []string, i int) int {
	for i < len(lines) && bulletRE().MatchString(lines[i]) {
		m := bulletRE().FindStringSubmatch(lines[i])
		text := []string{strings.TrimSpace(lines[i][len(m[0]):])}
		for i++; i < len(lines); i++ {
			l := lines[i]
			if strings.TrimSpace(l) == "" || bulletRE().MatchString(l) || !strings.HasPrefix(l, " ") {
				break
			}
			text = append(text, strings.TrimSpace(l))
		}
		mark := `\(bu`
		if m[2] != "-" && m[2] != "*" {
			mark = m[2]
		}
		p.Bullet(mark, Inline(strings.Join(text, " ")))
	}
	return i
}

// table writes a Markdown table as tagged paragraphs.
func (p *Page) table(lines []string, i int) int {
	var rows [][]string
	for ; i < len(lines) && strings.HasPrefix(lines[i], "|"); i++ {
		rows = append(rows, cells(lines[i]))
	}
	if len(rows) < 2 {
		return i
	}
	header, body := rows[0], rows[2:] // rows[1] is the |---| separator
	for _, r := range body {
		if len(r) == 0 {
			continue
		}
		var parts []string
		for c := 1; c < len(r)-1 && c < len(header); c++ {
			if strings.TrimSpace(r[c]) != "" {
				parts = append(parts, stripInline(header[c])+": "+Inline(r[c]))
			}
		}
		text := ""
		if len(parts) > 0 {
			text = `\fI` + strings.Join(parts, "; ") + `.\fR `
		}
		if len(r) > 1 {
			text += Inline(r[len(r)-1])
		}
		p.Term(Inline(r[0]), text)
	}
	return i
}

// cells splits a table row, honouring \| inside a cell.
func cells(row string) []string {
	row = strings.TrimSpace(row)
	row = strings.TrimPrefix(strings.TrimSuffix(row, "|"), "|")
	row = strings.ReplaceAll(row, `\|`, "\x00")
	var out []string
	for _, c := range strings.Split(row, "|") {
		out = append(out, strings.TrimSpace(strings.ReplaceAll(c, "\x00", "|")))
	}
	return out
}

// Inline renders Markdown inline markup: code spans and bold in bold, links
// as their text.
func Inline(s string) string {
	s = linkRE().ReplaceAllString(s, "$1")
	var b strings.Builder
	last := 0
	for _, m := range codeSpanRE().FindAllStringSubmatchIndex(s, -1) {
		b.WriteString(inlineText(s[last:m[0]]))
		b.WriteString(Bold(s[m[2]:m[3]]))
		last = m[1]
	}
	b.WriteString(inlineText(s[last:]))
	return b.String()
}

// inlineText renders text outside code spans: bold, then escapes.
func inlineText(s string) string {
	var b strings.Builder
	last := 0
	for _, m := range boldRE().FindAllStringSubmatchIndex(s, -1) {
		b.WriteString(Escape(s[last:m[0]]))
		b.WriteString(Bold(s[m[2]:m[3]]))
		last = m[1]
	}
	b.WriteString(Escape(s[last:]))
	return b.String()
}

// stripInline drops inline markup, for headings and table headers.
func stripInline(s string) string {
	s = linkRE().ReplaceAllString(s, "$1")
	return strings.NewReplacer("`", "", "**", "").Replace(s)
}
