// Package manpage writes manual pages in roff (man(7) macros) for the
// packaged binaries: directord(8) and directorctl(8) from their command
// definitions, directord.yaml(5) from docs/configuration.md. Keeping one
// source for the help, the reference and the page keeps them from drifting.
package manpage

import (
	"fmt"
	"io"
	"strings"
)

// Page is one manual page being written.
type Page struct {
	w   io.Writer
	err error
}

// New starts a page: NAME (name and a one-line summary) after the title line.
// date is the build date (YYYY-MM-DD) and version the program version.
func New(w io.Writer, name string, section int, date, version, summary string) *Page {
	p := &Page{w: w}
	p.raw(fmt.Sprintf(".TH %s %d %q %q %q\n", strings.ToUpper(quoteless(name)), section, date,
		"Anycast Director "+version, "Anycast Director"))
	p.Section("NAME")
	p.raw(fmt.Sprintf("%s \\- %s\n", Escape(name), Escape(summary)))
	return p
}

// Err returns the first write error.
func (p *Page) Err() error { return p.err }

// raw writes roff as it is.
func (p *Page) raw(s string) {
	if p.err == nil {
		_, p.err = io.WriteString(p.w, s)
	}
}

// Section starts a section (.SH); the title is upper-cased as man(7) wants.
func (p *Page) Section(title string) { p.raw(".SH " + strings.ToUpper(Escape(title)) + "\n") }

// Subsection starts a subsection (.SS).
func (p *Page) Subsection(title string) { p.raw(".SS " + Escape(title) + "\n") }

// Para writes a paragraph of plain text.
func (p *Page) Para(text string) { p.raw(".PP\n" + line(Escape(text)) + "\n") }

// Indent and Outdent bracket an indented block (.RS/.RE).
func (p *Page) Indent()  { p.raw(".RS 4\n") }
func (p *Page) Outdent() { p.raw(".RE\n") }

// Roff writes text that is already roff (from Inline, for example).
func (p *Page) Roff(text string) { p.raw(line(text) + "\n") }

// Term writes a tagged paragraph: term (already roff) and its text.
func (p *Page) Term(term, text string) {
	p.raw(".TP\n" + line(term) + "\n" + line(text) + "\n")
}

// Synopsis writes one synopsis line: the program in bold, the rest as is.
func (p *Page) Synopsis(program, rest string) {
	p.raw(".PP\n\\fB" + Escape(program) + "\\fR " + Escape(rest) + "\n")
}

// Code writes a literal block.
func (p *Page) Code(lines []string) {
	p.raw(".PP\n.RS 4\n.nf\n")
	for _, l := range lines {
		p.raw(line(Escape(l)) + "\n")
	}
	p.raw(".fi\n.RE\n")
}

// Bullet writes one list item.
func (p *Page) Bullet(mark, text string) {
	p.raw(".IP " + mark + " 4\n" + line(text) + "\n")
}

// Escape makes plain text safe for roff: backslashes and minus signs
// (which man renders as hyphens otherwise).
func Escape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// Bold renders plain text in bold.
func Bold(s string) string { return `\fB` + Escape(s) + `\fR` }

// Italic renders plain text in italics.
func Italic(s string) string { return `\fI` + Escape(s) + `\fR` }

// line protects a line that would start with a control character.
func line(s string) string {
	var b strings.Builder
	for i, l := range strings.Split(s, "\n") {
		if i > 0 {
			b.WriteByte('\n')
		}
		if strings.HasPrefix(l, ".") || strings.HasPrefix(l, "'") {
			b.WriteString(`\&`)
		}
		b.WriteString(l)
	}
	return b.String()
}

// quoteless drops double quotes, which .TH arguments cannot hold.
func quoteless(s string) string { return strings.ReplaceAll(s, `"`, "") }
