package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// TestAnchorsAndMerges checks YAML reuse: an alias copies a value, a merge
// key (<<) copies a mapping's keys under the ones written next to it.
func TestAnchorsAndMerges(t *testing.T) {
	c, err := Load("testdata/valid/anchors.yaml")
	if err != nil {
		t.Fatal(err)
	}
	type summary struct {
		Name       string
		Port       uint16
		Type       CheckType
		Interval   time.Duration
		Path       string
		TLSVerify  bool
		Backends   int
		Communites []uint32
	}
	var got []summary
	for _, s := range c.Services {
		got = append(got, summary{s.Name, s.Port, s.Health.Type, s.Health.Interval, s.Health.Path, s.Health.TLSVerify, len(s.Backends), s.Advertise.Communities})
	}
	want := []summary{
		{"web", 80, CheckHTTP, time.Second, "/healthz", false, 2, []uint32{65100<<16 | 100}},
		// merged from *web: vip, advertise, backends; its own name, port, health
		{"web-tls", 443, CheckHTTPS, time.Second, "/healthz", true, 2, []uint32{65100<<16 | 100}},
		{"web6", 80, CheckHTTP, time.Second, "/healthz", false, 1, nil},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("services (-want +got):\n%s", diff)
	}
	if c.Services[1].Backends[0].Port != 443 {
		t.Errorf("merged backends take the merging service's port: got %d, want 443", c.Services[1].Backends[0].Port)
	}
}

// TestMergeErrorsKeepLines: an error inside an anchored block is reported on
// the anchor's line, under the path of every use.
func TestMergeErrorsKeepLines(t *testing.T) {
	in := `director: { name: d1 }
services:
  - name: a
    vip: 198.18.0.10
    port: 80
    health: &h
      type: http
      path: nope
    backends: [ { address: 10.0.2.21 } ]
  - name: b
    vip: 198.18.0.11
    port: 80
    health: { <<: *h, interval: 3s }
    backends: [ { address: 10.0.2.21 } ]
  - name: c
    vip: 198.18.0.12
    port: 80
    health: { <<: [*h, {bogus: 1}] }
    backends: [ { address: 10.0.2.21 } ]
  - name: d
    vip: 198.18.0.13
    port: 80
    health: { <<: 5 }
    backends: [ { address: 10.0.2.21 } ]
`
	_, err := Parse("m.yaml", []byte(in))
	want := []string{
		`8 services[0].health.path`,
		`8 services[1].health.path`,
		`8 services[2].health.path`,
		`18 services[2].health.bogus`,
		`23 services[3].health`,
	}
	var errs Errors
	if !errors.As(err, &errs) {
		t.Fatalf("got %v, want Errors", err)
	}
	var got []string
	for _, e := range errs {
		got = append(got, strings.Join([]string{strconv.Itoa(e.Line), e.Path}, " "))
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("(-want +got):\n%s\nall errors:\n%v", diff, err)
	}
}

// TestAliasBomb: aliases that would expand a 40 kB file into tens of
// millions of nodes are refused quickly instead of being expanded. (The
// schema is shallow, so the classic nested billion laughs stops at the first
// type error; the expansion that remains is lists of aliases to mappings that
// hold lists of aliases.)
func TestAliasBomb(t *testing.T) {
	const n = 3000
	var b strings.Builder
	b.WriteString("director: { name: d1 }\nservices:\n  - &s { name: a, vip: 198.18.0.10, port: 80, backends: [&x { address: 10.0.2.21 }")
	b.WriteString(strings.Repeat(", *x", n))
	b.WriteString("] }\n")
	b.WriteString(strings.Repeat("  - *s\n", n))
	start := time.Now()
	_, err := Parse("bomb.yaml", []byte(b.String()))
	if !hasError(err, "aliases expand this file beyond any sensible size") {
		t.Fatalf("got %.500v, want the alias expansion error", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("refusing the bomb took %s", d)
	}
}

// TestErrorFormat covers the printed forms of Error and the order of Errors.
func TestErrorFormat(t *testing.T) {
	es := Errors{
		{File: "c.yaml", Line: 14, Path: "services[0].backends[1].address", Msg: `"10.0.0.300" is not an IP address`},
		{File: "c.yaml", Line: 3, Path: "director.name", Msg: "required", Hint: "for example name: d1"},
		{File: "c.yaml", Path: PathDocument, Msg: "the file holds no configuration"},
		{Line: 2, Path: "log.level", Msg: "bad"},
		{File: "c.yaml", Line: 3, Path: "director.name", Msg: "required", Hint: "duplicate, dropped"},
	}.sorted()
	// File-level errors first, then by line; exact duplicates dropped.
	want := `c.yaml: document: the file holds no configuration
line 2: log.level: bad
c.yaml:3: director.name: required (hint: for example name: d1)
c.yaml:14: services[0].backends[1].address: "10.0.0.300" is not an IP address`
	if diff := cmp.Diff(want, es.Error()); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0},
		{"path", "path", 0},
		{"paht", "path", 1},
		{"helth", "health", 1},
		{"bpg", "bgp", 1},
		{"abc", "", 3},
		{"kitten", "sitting", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestParentPath(t *testing.T) {
	tests := []struct{ in, want string }{
		{"services[0].backends[1].address", "services[0].backends[1]"},
		{"services[0].backends[1]", "services[0].backends"},
		{"services", ""},
		{`ipvs.sysctls["a.b"]`, "ipvs.sysctls"},
		{"", ""},
	}
	for _, tt := range tests {
		if got := parentPath(tt.in); got != tt.want {
			t.Errorf("parentPath(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestWarnings: sections the announce mode does not use load, with a warning.
func TestWarnings(t *testing.T) {
	c := mustParse(t, `director: { name: d1, announce: none }
bgp:
  asn: 65100
  router_id: 10.0.1.11
  peers: [ { address: 10.0.1.1, asn: 65000 } ]
kernel: { table: 100 }
services:
  - name: web
    vip: 198.18.0.10
    port: 80
    advertise: { med: 5 }
    backends: [ { address: 10.0.2.21 } ]
`)
	var got []string
	for _, w := range c.Warnings {
		got = append(got, w.Error())
	}
	want := []string{
		"test.yaml:2: bgp: the bgp section is ignored: director.announce is none",
		"test.yaml:6: kernel.table: kernel.table is ignored: director.announce is none",
		"test.yaml:11: services[0].advertise: advertise is ignored: director.announce is none",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	if c.BGP != nil {
		t.Errorf("BGP = %+v, want nil when announce is not bgp", c.BGP)
	}
}

// TestBFDOnMultihopSessions: BFD asked for on a multihop session (multihop_ttl
// or ttl_security above 1) loads without it, with a warning at the bfd line,
// because the speaker runs single-hop BFD only; on a one-hop session it stays,
// with a warning for GTSM, where FRR runs multihop BFD.
func TestBFDOnMultihopSessions(t *testing.T) {
	c := mustParse(t, `director: { name: d1 }
bgp:
  asn: 65100
  router_id: 10.0.1.11
  peers:
    - { address: 10.0.1.1, asn: 65000, bfd: {} }
    - { address: 10.0.2.1, asn: 65000, multihop_ttl: 2, bfd: {} }
    - { address: 10.0.3.1, asn: 65000, ttl_security: 2, bfd: {} }
    - { address: 10.0.4.1, asn: 65000, ttl_security: 1, bfd: {} }
services:
  - { name: web, vip: 198.18.0.10, port: 80, backends: [ { address: 10.0.2.21 } ] }
`)
	var got []string
	for _, w := range c.Warnings {
		got = append(got, w.Error())
	}
	hint := " (hint: remove bfd; failures of this session are detected by hold_time, and router-config leaves BFD out for it)"
	want := []string{
		"test.yaml:7: bgp.peers[1].bfd: bfd is not used on this session: it is multihop (2 hops) and the speaker runs single-hop BFD only" + hint,
		"test.yaml:8: bgp.peers[2].bfd: bfd is not used on this session: it is multihop (2 hops) and the speaker runs single-hop BFD only" + hint,
		"test.yaml:9: bgp.peers[3].bfd: with an FRR router, bfd stays down on this ttl_security session: FRR 8.4 runs multihop BFD with GTSM neighbors, and the speaker answers single-hop BFD only" +
			" (hint: BIRD runs single-hop BFD here; with FRR, router-config leaves BFD out for this session and failures are detected by hold_time)",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	for i, on := range []bool{true, false, false, true} {
		if (c.BGP.Peers[i].BFD != nil) != on {
			t.Errorf("peers[%d].BFD = %+v, want BFD on: %v", i, c.BGP.Peers[i].BFD, on)
		}
	}
}

func TestLoadErrors(t *testing.T) {
	_, err := Load(filepath.Join(t.TempDir(), "missing.yaml"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: got %v, want fs.ErrNotExist", err)
	}
	var errs Errors
	if errors.As(err, &errs) {
		t.Errorf("a read error must not look like validation errors: %v", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(bad, []byte("director: {}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = Load(bad)
	var first *Error
	if wrapped := fmt.Errorf("reload: %w", err); !errors.As(wrapped, &first) || first.Path != "director.name" {
		t.Errorf("errors.As through a wrapped Errors gave %v, want the director.name error", first)
	}
	if !errors.As(err, &errs) || len(errs) != 1 || errs[0].File != bad || errs[0].Path != "director.name" || errs[0].Line != 1 {
		t.Errorf("got %v, want one director.name error naming %s at line 1", err, bad)
	}
}

// TestDigest: the digest is a function of the bytes alone.
func TestDigest(t *testing.T) {
	a := mustParse(t, "director: { name: d1 }\n")
	b := mustParse(t, "director: { name: d1 }\n")
	c := mustParse(t, "director: { name: d1 } # changed\n")
	if a.Digest != b.Digest || a.Digest == c.Digest || len(a.Digest) != 12 {
		t.Errorf("digests %q %q %q: want equal for equal bytes, different otherwise, 12 digits", a.Digest, b.Digest, c.Digest)
	}
	if a.Digest != Digest([]byte("director: { name: d1 }\n")) {
		t.Errorf("Config.Digest %q differs from Digest()", a.Digest)
	}
}

// TestIntegerForms: integers mean what yaml.v3 says they mean, fast path or not.
func TestIntegerForms(t *testing.T) {
	tests := []struct {
		in   string
		want int
	}{
		{"80", 80}, {"0x50", 80}, {"0o120", 80}, {"1_0", 10}, {"010", 8}, {"+80", 80},
	}
	for _, tt := range tests {
		c := mustParse(t, "director: { name: d1 }\nservices: [ { name: a, vip: 198.18.0.10, port: 80, backends: [ { address: 10.0.2.1, weight: "+tt.in+" } ] } ]\n")
		if got := c.Services[0].Backends[0].Weight; got != tt.want {
			t.Errorf("weight: %s = %d, want %d", tt.in, got, tt.want)
		}
	}
}

// TestGracefulRestart: bgp.graceful_restart: {} turns Graceful Restart on
// with the default restart time; the time is whole seconds within bounds,
// and an error names its line.
func TestGracefulRestart(t *testing.T) {
	file := func(gr string) string {
		return `director: { name: d1 }
bgp:
  asn: 65100
  router_id: 10.0.1.11
  peers: [ { address: 10.0.1.1, asn: 65000 } ]
` + gr + `services:
  - { name: web, vip: 198.18.0.10, port: 80, backends: [ { address: 10.0.2.21 } ] }
`
	}
	if c := mustParse(t, file("")); c.BGP.GracefulRestart != nil {
		t.Errorf("without the key: %+v, want Graceful Restart off", c.BGP.GracefulRestart)
	}
	if c := mustParse(t, file("  graceful_restart: {}\n")); c.BGP.GracefulRestart == nil || c.BGP.GracefulRestart.RestartTime != DefaultRestartTime {
		t.Errorf("graceful_restart: {} gives %+v, want restart time %s", c.BGP.GracefulRestart, DefaultRestartTime)
	}
	if c := mustParse(t, file("  graceful_restart: { restart_time: 2m }\n")); c.BGP.GracefulRestart.RestartTime != 2*time.Minute {
		t.Errorf("restart_time 2m gives %+v", c.BGP.GracefulRestart)
	}
	for value, want := range map[string]string{
		"4s":     "test.yaml:7: bgp.graceful_restart.restart_time: 4s is out of range (5s..10m0s)",
		"11m":    "test.yaml:7: bgp.graceful_restart.restart_time: 11m is out of range (5s..10m0s)",
		"1500ms": "test.yaml:7: bgp.graceful_restart.restart_time: 1500ms is not a whole number of seconds",
	} {
		_, err := Parse("test.yaml", []byte(file("  graceful_restart:\n    restart_time: "+value+"\n")))
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("restart_time %s: got %v, want %q", value, err, want)
		}
	}
}
