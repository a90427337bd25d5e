package config

import (
	"reflect"
	"strconv"
	"strings"

	yaml "go.yaml.in/yaml/v3"
)

// decoder fills the raw structs from a yaml.Node tree. It is strict where
// yaml.v3 is not: Node.Decode ignores KnownFields and reports type errors
// without a field path, so the tree is walked here, reporting every unknown
// key, duplicate key and type mismatch with its line and path in one pass.
// Anchors, aliases and merge keys (<<) are supported; alias cycles and
// alias bombs are errors.
type decoder struct {
	r *report
	// active holds the alias targets being expanded, to detect cycles.
	active map[*yaml.Node]bool
	// budget is how many more nodes may be visited; aliases can make a small
	// file expand exponentially.
	budget    int
	exhausted bool
	// uses holds the alias nodes being expanded, outermost first: a problem
	// found while expanding is reported where the outermost alias is used,
	// which is the line an operator wrote, not inside the anchor.
	uses []aliasUse
	// fields caches fieldIndex per raw struct type: a large file has the
	// same few structs thousands of times.
	fields map[reflect.Type]map[string]int
	// blocks holds, per type, the block newValue cuts values from.
	blocks map[reflect.Type]*valueBlock
	// pairBlock is the block pairSlice cuts mappings' pairs from.
	pairBlock []pair
	// full makes the decoder build field paths, record every key's line
	// (report.lines) and report problems. Without it (the quick pass) it
	// builds no paths and only notes that there is a problem, for the full
	// pass to report: paths and lines cost a third of a reload's decoding,
	// and a file being reloaded seldom has problems.
	full    bool
	problem bool
}

// aliasUse is an alias being expanded and the field path where it is used.
type aliasUse struct {
	n    *yaml.Node
	path string
}

// Bounds of single collections, checked before their items are decoded: the
// largest list the project plans for is 10,000 services, and no section has
// more than a few dozen keys (ipvs.sysctls included).
const (
	maxItems = 100_000
	maxKeys  = 1_000
)

// maxVisits bounds the nodes decoding visits, aliases expanded: twice the
// values a file may hold, so reusing anchors can at most double the work of
// the largest file Parse accepts.
const maxVisits = 2 * maxValues

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

func isMerge(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.Value == "<<" && n.ShortTag() == "!!merge"
}

// spend uses one unit of the expansion budget; false means stop decoding.
func (d *decoder) spend(n *yaml.Node, path string) bool {
	if d.problem {
		return false // a quick pass stops at its first problem
	}
	d.budget--
	if d.budget >= 0 {
		return true
	}
	if !d.exhausted {
		d.exhausted = true
		line := n.Line
		if len(d.uses) > 0 {
			line, path = d.uses[0].n.Line, d.uses[0].path
		}
		d.errAt(line, path, "aliases expand this file beyond any sensible size").
			hintf("an alias bomb or a very deep reuse of anchors; write the values out")
	}
	return false
}

// deref follows an alias. ok is false when the alias closes a cycle; release
// must be called when the expansion is done.
func (d *decoder) deref(n *yaml.Node, path string) (target *yaml.Node, release func(), ok bool) {
	if n.Kind != yaml.AliasNode {
		return n, func() {}, true
	}
	t := n.Alias
	if t == nil || d.active[t] {
		d.errAt(n.Line, path, "alias *%s refers to a value that contains itself", n.Value)
		return nil, nil, false
	}
	// An alias to an alias is not possible in YAML, but stay safe.
	if t.Kind == yaml.AliasNode {
		d.errAt(n.Line, path, "alias *%s refers to another alias", n.Value)
		return nil, nil, false
	}
	d.active[t] = true
	d.uses = append(d.uses, aliasUse{n, path})
	return t, func() {
		delete(d.active, t)
		d.uses = d.uses[:len(d.uses)-1]
	}, true
}

// value decodes n into v (a pointer, slice or map field of a raw struct).
// Null leaves v nil: the validation stage applies the default.
func (d *decoder) value(n *yaml.Node, v reflect.Value, path string) {
	if !d.spend(n, path) {
		return
	}
	n, release, ok := d.deref(n, path)
	if !ok {
		return
	}
	defer release()
	if isNull(n) {
		return
	}
	switch v.Kind() {
	case reflect.Pointer:
		elem := v.Type().Elem()
		p := d.newValue(elem)
		if elem.Kind() == reflect.Struct {
			if n.Kind != yaml.MappingNode {
				d.errAt(n.Line, path, "expected a mapping, got %s", describe(n))
				return
			}
			d.mapping(n, p.Elem(), path)
		} else if !d.scalar(n, p.Elem(), path) {
			return
		}
		v.Set(p)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			e := d.errAt(n.Line, path, "expected a list, got %s", describe(n))
			if n.Kind == yaml.ScalarNode {
				e.hintf("write a list, e.g. [%s] or one \"- item\" per line", n.Value)
			}
			return
		}
		if len(n.Content) > maxItems {
			d.errAt(n.Line, path, "a list of %d items is longer than the %d allowed", len(n.Content), maxItems).
				hintf("10,000 services is the most this daemon is built and tested for")
			return
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			ip := d.indexPath(path, i)
			d.line(ip, item.Line)
			d.value(item, s.Index(i), ip)
		}
		v.Set(s)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			d.errAt(n.Line, path, "expected a mapping, got %s", describe(n))
			return
		}
		m := reflect.MakeMap(v.Type())
		for _, p := range d.pairs(n, path) {
			kp := d.fieldPath(path, p.key)
			d.line(kp, p.k.Line)
			ev := reflect.New(v.Type().Elem()).Elem()
			if !d.spend(p.v, kp) {
				return
			}
			val, rel, ok := d.deref(p.v, kp)
			if !ok {
				continue
			}
			if isNull(val) {
				d.errAt(val.Line, kp, "has no value")
			} else if d.scalar(val, ev, kp) {
				m.SetMapIndex(reflect.ValueOf(p.key), ev)
			}
			rel()
		}
		v.Set(m)
	}
}

// mapping decodes a mapping node into the raw struct v, rejecting unknown keys.
func (d *decoder) mapping(n *yaml.Node, v reflect.Value, path string) {
	t := v.Type()
	for _, p := range d.pairs(n, path) {
		kp := d.fieldPath(path, p.key)
		i, ok := d.fieldIndex(t, p.key)
		if !ok {
			d.unknownKey(p, t, path, kp)
			continue
		}
		d.line(kp, p.k.Line)
		d.value(p.v, v.Field(i), kp)
	}
}

func (d *decoder) unknownKey(p pair, t reflect.Type, path, kp string) {
	if !d.full {
		d.problem = true
		return
	}
	names := keyNames(t)
	e := d.errAt(p.k.Line, kp, "unknown key %q", p.key)
	where := "at the top level"
	if path != "" {
		where = "in " + path
	}
	if s := closest(p.key, names); s != "" {
		e.hintf("did you mean %q? valid keys %s: %s", s, where, strings.Join(names, ", "))
	} else {
		e.hintf("valid keys %s: %s", where, strings.Join(names, ", "))
	}
}

// fieldIndex finds the struct field whose yaml tag is key.
func (d *decoder) fieldIndex(t reflect.Type, key string) (int, bool) {
	byKey, ok := d.fields[t]
	if !ok {
		byKey = make(map[string]int, t.NumField())
		for i := t.NumField() - 1; i >= 0; i-- {
			byKey[t.Field(i).Tag.Get("yaml")] = i // the first field wins
		}
		d.fields[t] = byKey
	}
	i, ok := byKey[key]
	return i, ok
}

// keyNames lists the keys a raw struct accepts, in field order.
func keyNames(t reflect.Type) []string {
	names := make([]string, t.NumField())
	for i := range names {
		names[i] = t.Field(i).Tag.Get("yaml")
	}
	return names
}

// scalar decodes a scalar node into a string, int64 or bool.
func (d *decoder) scalar(n *yaml.Node, v reflect.Value, path string) bool {
	if n.Kind != yaml.ScalarNode {
		want := "true or false"
		switch v.Kind() {
		case reflect.String:
			want = "a string"
		case reflect.Int64:
			want = "an integer"
		}
		d.errAt(n.Line, path, "expected %s, got %s", want, describe(n))
		return false
	}
	tag := n.ShortTag()
	switch v.Kind() {
	case reflect.String:
		v.SetString(n.Value)
		return true
	case reflect.Int64:
		if tag == "!!float" && isDigits(n.Value) {
			// YAML resolves an integer too large for 64 bits as a float.
			d.errAt(n.Line, path, "%s is out of range", n.Value)
			return false
		}
		if tag != "!!int" {
			e := d.errAt(n.Line, path, "expected an integer, got %s", describe(n))
			if _, err := strconv.ParseInt(n.Value, 10, 64); err == nil && tag == "!!str" {
				e.hintf("remove the quotes")
			}
			return false
		}
		// Plain decimal is the common case; YAML's other integer forms
		// (0x1F, 0o17, 1_000, and 010, which yaml.v3 reads as octal) go
		// through the library so their meaning does not change.
		if isPlainDecimal(n.Value) {
			if i, err := strconv.ParseInt(n.Value, 10, 64); err == nil {
				v.SetInt(i)
				return true
			}
		}
		var i int64
		if err := n.Decode(&i); err != nil {
			d.errAt(n.Line, path, "%s is out of range", n.Value)
			return false
		}
		v.SetInt(i)
		return true
	case reflect.Bool:
		if tag != "!!bool" {
			e := d.errAt(n.Line, path, "expected true or false, got %s", describe(n))
			if _, err := strconv.ParseBool(n.Value); err == nil && tag == "!!str" {
				e.hintf("remove the quotes")
			}
			return false
		}
		var b bool
		if err := n.Decode(&b); err != nil {
			d.errAt(n.Line, path, "expected true or false, got %s", describe(n))
			return false
		}
		v.SetBool(b)
		return true
	}
	d.errAt(n.Line, path, "cannot decode %s here", describe(n))
	return false
}

// isPlainDecimal reports whether s is "0" or a decimal integer without a
// leading zero, optionally negative.
func isPlainDecimal(s string) bool {
	s = strings.TrimPrefix(s, "-")
	if s == "0" {
		return true
	}
	if s == "" || s[0] < '1' || s[0] > '9' {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// isDigits reports whether s is an optionally signed run of decimal digits.
func isDigits(s string) bool {
	s = strings.TrimLeft(s, "+-")
	if s == "" {
		return false
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// describe names a node's kind and value for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	case yaml.ScalarNode:
		v := n.Value
		if len(v) > 40 {
			v = v[:40] + "..."
		}
		switch n.ShortTag() {
		case "!!str":
			return "the string " + strconv.Quote(v)
		case "!!int", "!!float":
			return "the number " + v
		case "!!bool":
			return v
		case "!!null":
			return "null"
		}
		return strconv.Quote(v)
	}
	return "nothing"
}
