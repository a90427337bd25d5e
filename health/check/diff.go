package check

import (
	"fmt"
	"reflect"
	"strings"
)

// Field describes one Spec field: its configuration key and whether it is a
// timing field.
type Field struct {
	// Index is the field's index in Spec, for reflect.Value.Field.
	Index int
	// Key is the field's key in a `health:` block ("expect_body").
	Key string
	// Timing is true for the fields that do not change what is probed.
	Timing bool
}

// Fields lists every Spec field in declaration order, read from the struct
// tags: the single list of which fields are timing.
func Fields() []Field {
	ty := reflect.TypeFor[Spec]()
	out := make([]Field, ty.NumField())
	for i := range ty.NumField() {
		key, opt, _ := strings.Cut(ty.Field(i).Tag.Get("config"), ",")
		out[i] = Field{Index: i, Key: key, Timing: opt == "timing"}
	}
	return out
}

// Change is one field that differs between two specs.
type Change struct {
	// Key is the field's configuration key.
	Key string
	// Timing is true when only when or how often the target is probed
	// changes, not what is probed.
	Timing bool
	// From and To are the old and new values as the configuration writes them.
	From, To string
}

// String renders c as "rise 3 -> 4".
func (c Change) String() string { return fmt.Sprintf("%s %s -> %s", c.Key, c.From, c.To) }

// Diff lists the fields in which b differs from a, in declaration order.
func Diff(a, b Spec) []Change {
	va, vb := reflect.ValueOf(a), reflect.ValueOf(b)
	var out []Change
	for _, f := range Fields() {
		x, y := va.Field(f.Index).Interface(), vb.Field(f.Index).Interface()
		if reflect.DeepEqual(x, y) {
			continue
		}
		out = append(out, Change{Key: f.Key, Timing: f.Timing, From: show(x), To: show(y)})
	}
	return out
}

// show renders a field value for a change line: strings quoted, empty
// values as "none".
func show(v any) string {
	switch v := v.(type) {
	case string:
		if v == "" {
			return "none"
		}
		return fmt.Sprintf("%q", v)
	case []string:
		if len(v) == 0 {
			return "none"
		}
		return fmt.Sprintf("%q", v)
	case []int:
		if len(v) == 0 {
			return "none"
		}
	case fmt.Stringer:
		if s := v.String(); s != "" && s != "invalid IP" {
			return s
		}
		return "none"
	}
	return fmt.Sprint(v)
}
