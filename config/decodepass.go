package config

import (
	"reflect"

	yaml "go.yaml.in/yaml/v3"
)

// decodeRoot decodes the document's root mapping into rc. It returns false
// when aliases exhausted the visit budget: rc is then incomplete, and
// validating it would only add follow-on errors. A quick pass decodes a
// file without problems; one with problems is decoded again by a full pass,
// which reports them. The lines of keys are recorded when the validation
// stage first asks for one (report.lineOf).
func decodeRoot(r *report, root *yaml.Node, rc *rawConfig) bool {
	r.root = root
	if root.Kind != yaml.MappingNode {
		r.errAt(root.Line, PathDocument, "expected a mapping of sections, got %s", describe(root)).
			hintf("a configuration starts with keys such as director:, bgp: and services:")
		return false
	}
	nodes := countNodes(root)
	d := newDecoder(r, nodes, false)
	d.mapping(root, reflect.ValueOf(rc).Elem(), "")
	if !d.problem {
		return true
	}
	*rc = rawConfig{}
	d = newDecoder(r, nodes, true)
	d.mapping(root, reflect.ValueOf(rc).Elem(), "")
	return !d.exhausted
}

// recordLines fills r.lines by decoding r.root again with a full pass; the
// problems it finds were reported by decodeRoot already.
func (r *report) recordLines() {
	scratch := newReport(r.file)
	scratch.root = r.root
	var rc rawConfig
	newDecoder(scratch, countNodes(r.root), true).mapping(r.root, reflect.ValueOf(&rc).Elem(), "")
	r.lines = scratch.lines
}

// newDecoder returns a decoder for a tree of nodes nodes; a full one records
// lines in r.lines, sized once so that the map is not grown (rehashed) over
// and over while a large file is decoded.
func newDecoder(r *report, nodes int, full bool) *decoder {
	if full {
		r.lines = make(map[string]int, nodes/2)
		r.lines[""] = r.root.Line
	}
	return &decoder{r: r, active: make(map[*yaml.Node]bool), budget: min(16*nodes+100000, maxVisits),
		fields: make(map[reflect.Type]map[string]int), blocks: make(map[reflect.Type]*valueBlock), full: full}
}

// errAt reports a problem in a full pass; a quick pass only notes it.
func (d *decoder) errAt(line int, path, format string, args ...any) *Error {
	if !d.full {
		d.problem = true
		return nil
	}
	return d.r.errAt(line, path, format, args...)
}

// line records the line of path's key in a full pass.
func (d *decoder) line(path string, line int) {
	if d.full {
		d.r.lines[path] = line
	}
}

// fieldPath is the package's fieldPath in a full pass, "" in a quick one.
func (d *decoder) fieldPath(base, key string) string {
	if !d.full {
		return ""
	}
	return fieldPath(base, key)
}

// indexPath is the package's indexPath in a full pass, "" in a quick one.
func (d *decoder) indexPath(base string, i int) string {
	if !d.full {
		return ""
	}
	return indexPath(base, i)
}

// countNodes counts the nodes of the tree as written (aliases not followed).
func countNodes(n *yaml.Node) int {
	c := 1
	for _, ch := range n.Content {
		c += countNodes(ch)
	}
	return c
}

// valueBlock is a block of values of one type that newValue hands out.
type valueBlock struct {
	s    reflect.Value // a slice
	next int
}

// maxValueBlock is the largest block newValue allocates: blocks start
// small, so a section written once costs little, and double up to this.
const maxValueBlock = 256

// newValue returns a pointer to a new zero value of type t, cut from a block
// of them: the raw structs hold every scalar and section by pointer, and
// allocating each on its own was a third of decoding's allocations.
func (d *decoder) newValue(t reflect.Type) reflect.Value {
	b := d.blocks[t]
	if b == nil {
		b = &valueBlock{}
		d.blocks[t] = b
	}
	if !b.s.IsValid() || b.next == b.s.Len() {
		size := 4
		if b.s.IsValid() {
			size = min(2*b.s.Len(), maxValueBlock)
		}
		*b = valueBlock{s: reflect.MakeSlice(reflect.SliceOf(t), size, size)}
	}
	p := b.s.Index(b.next).Addr()
	b.next++
	return p
}
