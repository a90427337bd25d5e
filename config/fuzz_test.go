package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bytes to Parse: it must never panic, every error
// must say where it is (a line, or a file-level path) and what field, the
// result must not depend on anything but the input, and a configuration that
// loads must satisfy every invariant the rest of the daemon relies on.
// Seeds: every file under testdata/valid, testdata/bad (the corpus of bad
// configurations) and examples; findings live in testdata/fuzz/FuzzParse.
//
//	go test ./config -run '^$' -fuzz FuzzParse -fuzztime 5m
func FuzzParse(f *testing.F) {
	var seeds []string
	for _, g := range []string{"testdata/valid/*.yaml", "testdata/bad/*.yaml", "../examples/*.yaml"} {
		m, err := filepath.Glob(g)
		if err != nil {
			f.Fatal(err)
		}
		seeds = append(seeds, m...)
	}
	if len(seeds) == 0 {
		f.Fatal("no seed files")
	}
	for _, s := range seeds {
		data, err := os.ReadFile(s)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := parseWithin(t, data, 10*time.Second)
		again, err2 := Parse("fuzz.yaml", data)
		if fmt.Sprint(err) != fmt.Sprint(err2) || (c == nil) != (again == nil) {
			t.Fatalf("two parses of the same input differ:\n%v\n---\n%v", err, err2)
		}
		// YAML breaks lines at \n, \r, \r\n, NEL, LS and PS; counting each
		// of them (a \r\n twice) bounds the parser's line numbers.
		lines := 1
		for _, br := range []string{"\n", "\r", "\u0085", "\u2028", "\u2029"} {
			lines += bytes.Count(data, []byte(br))
		}
		if err == nil {
			if c == nil {
				t.Fatal("nil Config without an error")
			}
			for _, p := range invariantViolations(c) {
				t.Errorf("loaded config violates an invariant: %s", p)
			}
			checkErrors(t, c.Warnings, lines)
			return
		}
		if c != nil {
			t.Fatal("a Config together with an error")
		}
		var errs Errors
		if !errors.As(err, &errs) || len(errs) == 0 {
			t.Fatalf("error is %T %v, want non-empty Errors", err, err)
		}
		checkErrors(t, errs, lines)
	})
}

// parseWithin parses data, failing the test if that takes longer than limit:
// the fuzzer has no per-input deadline, and a slow input is a finding too.
func parseWithin(t *testing.T, data []byte, limit time.Duration) (*Config, error) {
	t.Helper()
	type result struct {
		c   *Config
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := Parse("fuzz.yaml", data)
		done <- result{c, err}
	}()
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case r := <-done:
		return r.c, r.err
	case <-timer.C:
		t.Fatalf("Parse took more than %s on %d bytes", limit, len(data))
		return nil, nil
	}
}

// checkErrors asserts that every error is placed: a line within the file (or
// a file-level error), a field path and a message.
func checkErrors(t *testing.T, errs []*Error, lines int) {
	t.Helper()
	for _, e := range errs {
		switch {
		case e.File != "fuzz.yaml":
			t.Errorf("error %q names file %q", e, e.File)
		case e.Path == "":
			t.Errorf("error %q has no path", e)
		case e.Msg == "":
			t.Errorf("error %q has no message", e)
		case e.Line == 0 && e.Path != PathSyntax && e.Path != PathDocument:
			t.Errorf("error %q has no line but is not a file-level error", e)
		case e.Line < 0 || e.Line > lines+1:
			t.Errorf("error %q: line %d is outside the %d-line file", e, e.Line, lines)
		}
	}
}

// invariantViolations lists what in c breaks the guarantees that validation
// gives the announcer and the adapters.
func invariantViolations(c *Config) []string {
	var out []string
	bad := func(format string, args ...any) { out = append(out, fmt.Sprintf(format, args...)) }
	d := c.Director
	if !isName(d.Name) || d.VIPInterface == "" || d.ResyncInterval <= 0 || d.MaxFailedResyncs < 1 ||
		d.HoldDown < 0 || d.DrainDelay < 0 || d.GracefulShutdown < 0 || d.Linger < 0 ||
		d.HoldDown > maxHoldDown || d.DrainDelay > maxDrainDelay || d.ResyncInterval > maxResyncInterval ||
		d.GracefulShutdown > maxGracefulShutdown || d.Linger > maxLinger {
		bad("director %+v", d)
	}
	if d.Announce < AnnounceBGP || d.Announce > AnnounceNone {
		bad("announce %d", d.Announce)
	}
	if (d.Announce == AnnounceBGP) != (c.BGP != nil) {
		bad("announce %s with BGP %v", d.Announce, c.BGP)
	}
	if c.BGP != nil {
		if c.BGP.ASN == 0 || !c.BGP.RouterID.Is4() || len(c.BGP.Peers) == 0 {
			bad("bgp %+v", c.BGP)
		}
		for _, p := range c.BGP.Peers {
			if p.Address == c.BGP.RouterID || slices.Contains(c.VIPs(), p.Address) {
				bad("peer %s is the director itself", p.Address)
			}
			if !p.Address.IsValid() || p.ASN == 0 || p.Port == 0 || (p.HoldTime != 0 && p.Keepalive >= p.HoldTime) ||
				p.ConnectRetry < 1e9 || p.IdleHoldAfterReset < 1e9 || len(p.Password) > maxMD5KeyLen ||
				(p.MultihopTTL != 0 && p.TTLSecurity != 0) || !(p.IPv4 || p.IPv6) ||
				(p.BFD != nil && (p.BFD.Multiplier == 0 || p.BFD.MinInterval < minBFDInterval)) {
				bad("peer %+v", p)
			}
		}
	}
	if c.API.Socket == "" || c.API.KeepConfigs < 1 {
		bad("api %+v", c.API)
	}
	if t := c.API.TCP; t != nil && (t.Listen == "" || t.Cert == "" || t.Key == "" || t.ClientCA == "") {
		bad("api.tcp %+v", t)
	}
	for name := range c.IPVS.Sysctls {
		if !isSysctlName(name) {
			bad("sysctl %q", name)
		}
	}
	names := map[string]bool{}
	for _, s := range c.Services {
		if !isName(s.Name) || names[s.Name] || !s.VIP.IsValid() || s.Port == 0 ||
			(s.Protocol != TCP && s.Protocol != UDP) || s.Forwarding < ForwardDR || s.Forwarding > ForwardLocal ||
			s.MinHealthy < 0 || s.MinHealthy > len(s.HealthTargets()) {
			bad("service %+v", s)
		}
		names[s.Name] = true
		h := s.Health
		if h.Interval > maxCheckInterval || s.Persistence > maxPersistence {
			bad("service %s: check interval %s, persistence %s", s.Name, h.Interval, s.Persistence)
		}
		if h.Interval <= 0 || h.Timeout <= 0 || h.Timeout >= h.Interval || h.Rise < 1 || h.Fall < 1 {
			bad("service %s: check %+v", s.Name, h)
		}
		if s.Forwarding != ForwardLocal && len(s.Backends) == 0 {
			bad("service %s without backends", s.Name)
		}
		for _, b := range s.Backends {
			if !b.Address.IsValid() || b.Port == 0 || b.Weight < 0 || b.Weight > maxWeight ||
				(s.Forwarding != ForwardLocal && b.Address.Is4() != s.VIP.Is4()) ||
				((s.Forwarding == ForwardDR || s.Forwarding == ForwardTunnel) && b.Port != s.Port) {
				bad("service %s: backend %+v", s.Name, b)
			}
		}
	}
	return out
}
