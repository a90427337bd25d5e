package config

import (
	"os"
	"reflect"
	"strings"
	"testing"
)

// TestDocsCoverEveryKey: docs/configuration.md names every key the decoder
// accepts, so the reference cannot fall behind the code.
func TestDocsCoverEveryKey(t *testing.T) {
	doc, err := os.ReadFile("../docs/configuration.md")
	if err != nil {
		t.Fatal(err)
	}
	var keys []string
	var walk func(reflect.Type, string)
	walk = func(ty reflect.Type, prefix string) {
		for ty.Kind() == reflect.Pointer || ty.Kind() == reflect.Slice {
			ty = ty.Elem()
		}
		if ty.Kind() != reflect.Struct {
			return
		}
		for i := 0; i < ty.NumField(); i++ {
			name := ty.Field(i).Tag.Get("yaml")
			keys = append(keys, prefix+name)
			walk(ty.Field(i).Type, prefix+name+".")
		}
	}
	walk(reflect.TypeOf(rawConfig{}), "")
	if len(keys) < 80 {
		t.Fatalf("found only %d keys; the walk is broken", len(keys))
	}
	for _, k := range keys {
		// A key is documented as `leaf` in its section's table, or as
		// `parent.leaf` for nested blocks such as api.tcp and bfd.
		parts := strings.Split(k, ".")
		leaf := parts[len(parts)-1]
		forms := []string{"`" + leaf + "`", "`" + leaf + "[]`"}
		if len(parts) > 1 {
			forms = append(forms, "`"+parts[len(parts)-2]+"."+leaf+"`")
		}
		found := false
		for _, f := range forms {
			found = found || strings.Contains(string(doc), f)
		}
		if !found {
			t.Errorf("docs/configuration.md does not document %s (none of %v)", k, forms)
		}
	}
}
