package config

import (
	yaml "go.yaml.in/yaml/v3"
)

// pair is one key and value of a mapping after merge keys are resolved.
type pair struct {
	key  string
	k, v *yaml.Node
}

// pairs returns a mapping's entries: its own keys first (duplicates are
// errors), then keys from merge keys (<<) that the mapping does not set, the
// earlier merge source winning as YAML specifies.
func (d *decoder) pairs(n *yaml.Node, path string) []pair {
	if len(n.Content)/2 > maxKeys {
		d.errAt(n.Line, path, "a mapping of %d keys has more than the %d allowed", len(n.Content)/2, maxKeys).
			hintf("no section has more than a few dozen keys: is this the right file?")
		return nil
	}
	seen := keySet{out: d.pairSlice(len(n.Content) / 2)}
	var merges []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if isMerge(k) {
			merges = append(merges, v)
			continue
		}
		key, ok := d.key(k, path)
		if !ok {
			continue
		}
		if first, dup := seen.line(key); dup {
			d.errAt(k.Line, fieldPath(path, key), "duplicate key %q (first set on line %d)", key, first).
				hintf("remove one of them")
			continue
		}
		seen.add(pair{key, k, v})
	}
	for _, m := range merges {
		for _, src := range d.mergeSources(m, path) {
			for _, p := range src {
				if _, dup := seen.line(p.key); dup {
					continue
				}
				seen.add(p)
			}
		}
	}
	return seen.out
}

// keySet holds a mapping's pairs and finds them by key: by looking through
// them while they are few (most mappings have a handful of keys, and a map
// per mapping was a tenth of decoding's allocations), through an index
// beyond that.
type keySet struct {
	out   []pair
	index map[string]int // the line of each key, once out is long
}

// keySetScan is how many pairs keySet looks through before it indexes them.
const keySetScan = 16

// line returns the line of key's pair, if there is one.
func (s *keySet) line(key string) (int, bool) {
	if s.index != nil {
		l, ok := s.index[key]
		return l, ok
	}
	for _, p := range s.out {
		if p.key == key {
			return p.k.Line, true
		}
	}
	return 0, false
}

// add appends a pair whose key is not in the set yet.
func (s *keySet) add(p pair) {
	s.out = append(s.out, p)
	switch {
	case s.index != nil:
		s.index[p.key] = p.k.Line
	case len(s.out) > keySetScan:
		s.index = make(map[string]int, 2*len(s.out))
		for _, q := range s.out {
			s.index[q.key] = q.k.Line
		}
	}
}

// mergeSources resolves the value of a merge key: a mapping, or a list of
// mappings, usually through aliases.
func (d *decoder) mergeSources(m *yaml.Node, path string) [][]pair {
	if !d.spend(m, path) {
		return nil
	}
	m, release, ok := d.deref(m, path)
	if !ok {
		return nil
	}
	defer release()
	switch m.Kind {
	case yaml.MappingNode:
		return [][]pair{d.pairs(m, path)}
	case yaml.SequenceNode:
		var out [][]pair
		for _, item := range m.Content {
			if !d.spend(item, path) {
				return out
			}
			it, rel, ok := d.deref(item, path)
			if !ok {
				continue
			}
			if it.Kind == yaml.MappingNode {
				out = append(out, d.pairs(it, path))
			} else {
				d.errAt(item.Line, path, "a merge key (<<) takes mappings, got %s", describe(it))
			}
			rel()
		}
		return out
	}
	d.errAt(m.Line, path, "a merge key (<<) takes a mapping or a list of mappings, got %s", describe(m))
	return nil
}

// key returns a mapping key's text; keys must be scalars.
func (d *decoder) key(k *yaml.Node, path string) (string, bool) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode {
		d.errAt(k.Line, path, "a key must be a plain name, got %s", describe(k))
		return "", false
	}
	return k.Value, true
}

// pairSlice returns an empty slice with room for k pairs, cut from a block
// (appending beyond k, as merge keys do, moves it out of the block).
func (d *decoder) pairSlice(k int) []pair { return reserve(&d.pairBlock, k, 256) }

// reserve returns an empty slice with room for k values, cut from *block,
// which is replaced by a new block of at least least values when it has no
// room left: many small slices of a parse share a few allocations.
func reserve[T any](block *[]T, k, least int) []T {
	if cap(*block)-len(*block) < k {
		*block = make([]T, 0, max(least, k))
	}
	at := len(*block)
	*block = (*block)[:at+k]
	return (*block)[at : at : at+k]
}
