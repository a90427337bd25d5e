package config

import (
	"reflect"
	"slices"
	"testing"

	"github.com/anycast-director/director/health/check"
)

// TestRawCheckMirrorsSpec: the YAML mirror of a health block has exactly the
// keys of check.Spec, so a field added to the shared spec cannot be left
// unconfigurable and a key cannot be decoded into nothing.
func TestRawCheckMirrorsSpec(t *testing.T) {
	var raw []string
	ty := reflect.TypeFor[rawCheck]()
	for i := range ty.NumField() {
		raw = append(raw, ty.Field(i).Tag.Get("yaml"))
	}
	var spec []string
	for _, f := range check.Fields() {
		spec = append(spec, f.Key)
	}
	slices.Sort(raw)
	slices.Sort(spec)
	if !slices.Equal(raw, spec) {
		t.Errorf("rawCheck keys %v differ from check.Spec keys %v", raw, spec)
	}
}
