package check

import (
	"bytes"
	"net/netip"
	"reflect"
	"testing"
	"time"
)

// setSample gives field i of s a non-zero value of its type, or fails the
// test for a type it does not know (extend it along with Spec).
func setSample(t *testing.T, s *Spec, i int) {
	t.Helper()
	f := reflect.ValueOf(s).Elem().Field(i)
	switch v := f.Addr().Interface().(type) {
	case *Type:
		*v = "sample"
	case *time.Duration:
		*v = 7 * time.Second
	case *int:
		*v = 7
	case *uint16:
		*v = 7
	case *bool:
		*v = !*v
	case *string:
		*v = "sample"
	case *netip.Addr:
		*v = netip.MustParseAddr("192.0.2.7")
	case *[]int:
		*v = append(*v, 7)
	case *[]string:
		*v = append(*v, "sample")
	default:
		t.Fatalf("Spec.%s has type %s, which this test cannot set; teach setSample",
			reflect.TypeFor[Spec]().Field(i).Name, f.Type())
	}
}

// base is a spec with every field set, so a change to any one field is a
// change and not only "empty vs set".
func base(t *testing.T) Spec {
	t.Helper()
	var s Spec
	for _, f := range Fields() {
		setSample(t, &s, f.Index)
	}
	s.Type, s.Path, s.Command = HTTP, "/healthz", []string{"/bin/true", "-x"}
	return s
}

// TestEveryFieldIsProbeOrTiming is the guard on the check spec: every field
// either changes AppendProbe (what is probed: two targets differing in it must
// not share a probe or a verdict) or is tagged timing (and changes only
// AppendTiming). A new field that is neither fails here.
func TestEveryFieldIsProbeOrTiming(t *testing.T) {
	ref := base(t)
	for _, f := range Fields() {
		name := reflect.TypeFor[Spec]().Field(f.Index).Name
		if f.Key == "" {
			t.Errorf("Spec.%s has no config tag; give it its configuration key", name)
		}
		s := ref.Clone()
		setSample(t, &s, f.Index)
		if reflect.DeepEqual(s, ref) {
			// Same sample twice: set again from zero.
			reflect.ValueOf(&s).Elem().Field(f.Index).SetZero()
		}
		probeChanged := !bytes.Equal(s.AppendProbe(nil), ref.AppendProbe(nil))
		timingChanged := !bytes.Equal(s.AppendTiming(nil), ref.AppendTiming(nil))
		switch {
		case f.Timing && probeChanged:
			t.Errorf("Spec.%s is tagged timing but changes what is probed (AppendProbe)", name)
		case f.Timing && !timingChanged:
			t.Errorf("Spec.%s is tagged timing but AppendTiming ignores it", name)
		case !f.Timing && !probeChanged:
			t.Errorf("Spec.%s changes neither AppendProbe nor is tagged timing: add it to AppendProbe, "+
				"or tag it timing if it does not change what is probed", name)
		case !f.Timing && timingChanged:
			t.Errorf("Spec.%s is not timing but changes AppendTiming", name)
		}
	}
}

// TestAppendProbeHasNoAmbiguousBoundaries: values that only move text from
// one field to the next encode differently.
func TestAppendProbeHasNoAmbiguousBoundaries(t *testing.T) {
	pairs := []struct{ a, b Spec }{
		{Spec{Method: "GET", Path: "/a"}, Spec{Method: "GET/a"}},
		{Spec{Path: "/a", Host: "b"}, Spec{Path: "/ab"}},
		{Spec{Command: []string{"a b"}}, Spec{Command: []string{"a", "b"}}},
		{Spec{ExpectStatus: []int{200, 204}}, Spec{ExpectStatus: []int{200}, ExpectBody: "204"}},
		{Spec{Payload: "x"}, Spec{Expect: "x"}},
	}
	for _, p := range pairs {
		if bytes.Equal(p.a.AppendProbe(nil), p.b.AppendProbe(nil)) {
			t.Errorf("%+v and %+v encode the same", p.a, p.b)
		}
	}
}

func TestDiff(t *testing.T) {
	a := Spec{Type: HTTP, Interval: time.Second, Rise: 3, Path: "/a"}
	b := a
	b.Rise, b.Path = 4, "/b"
	got := Diff(a, b)
	if len(got) != 2 {
		t.Fatalf("Diff = %v, want two changes", got)
	}
	if got[0].String() != "rise 3 -> 4" || !got[0].Timing {
		t.Errorf("first change = %+v, want timing rise 3 -> 4", got[0])
	}
	if got[1].String() != `path "/a" -> "/b"` || got[1].Timing {
		t.Errorf("second change = %+v, want probe path", got[1])
	}
	if d := Diff(a, a.Clone()); len(d) != 0 {
		t.Errorf("Diff of equal specs = %v", d)
	}
}
