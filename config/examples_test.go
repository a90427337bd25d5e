package config

import (
	"path/filepath"
	"testing"
)

// TestExamples: the shipped examples load without errors or warnings.
func TestExamples(t *testing.T) {
	files, err := filepath.Glob("../examples/*.yaml")
	if err != nil || len(files) < 2 {
		t.Fatalf("want examples/directord.yaml and examples/local.yaml, found %v (%v)", files, err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatalf("%v", err)
			}
			if len(c.Warnings) > 0 {
				t.Errorf("warnings:\n%v", Errors(c.Warnings))
			}
			if len(c.Services) == 0 {
				t.Error("an example without services")
			}
		})
	}
}

// TestLocalExample: examples/local.yaml must run where IPVS is missing, so
// it may hold only local services and announce nothing.
func TestLocalExample(t *testing.T) {
	c, err := Load("../examples/local.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Director.Announce != AnnounceNone {
		t.Errorf("announce = %s, want none", c.Director.Announce)
	}
	for _, s := range c.Services {
		if s.Forwarding != ForwardLocal {
			t.Errorf("service %s uses forwarding %s, want local", s.Name, s.Forwarding)
		}
	}
}
