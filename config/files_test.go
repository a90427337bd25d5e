package config

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the testdata/bad/*.errors golden files from the current output")

// TestValidFiles loads every file under testdata/valid: each must load with no
// error and no warning.
func TestValidFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/valid/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no valid test files: %v", err)
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			c, err := Load(f)
			if err != nil {
				t.Fatalf("Load(%s) failed:\n%v", f, err)
			}
			if len(c.Warnings) != 0 {
				t.Errorf("unexpected warnings:\n%v", Errors(c.Warnings))
			}
			if c.Source != f || len(c.Digest) != 12 {
				t.Errorf("Source %q Digest %q, want %q and 12 hex digits", c.Source, c.Digest, f)
			}
		})
	}
}

// TestBadFiles checks every file under testdata/bad twice: against its golden
// NAME.errors (the exact messages), and against the "# want: PATH..."
// comments written by hand on the lines where errors must be reported, so a
// golden file regenerated with -update cannot silently move an error to a
// wrong line.
func TestBadFiles(t *testing.T) {
	files, err := filepath.Glob("testdata/bad/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no bad test files: %v", err)
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			data, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			c, err := Parse(name, data)
			if err == nil {
				t.Fatalf("Parse succeeded, want errors (config %+v)", c)
			}
			var errs Errors
			if !errors.As(err, &errs) {
				t.Fatalf("error is %T, want config.Errors: %v", err, err)
			}
			got := errs.Error() + "\n"
			golden := strings.TrimSuffix(f, ".yaml") + ".errors"
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./config -run TestBadFiles -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("errors differ from %s (-want +got):\n%s", golden, diff)
			}
			if diff := cmp.Diff(wantedErrors(t, data), locations(errs)); diff != "" {
				t.Errorf("error locations differ from the # want comments (-want +got):\n%s", diff)
			}
		})
	}
}

// wantedErrors reads the "# want: PATH [PATH...]" annotations of a test file:
// each PATH must be reported on that comment's line ("# want-file:" for
// errors about the whole file, line 0).
func wantedErrors(t *testing.T, data []byte) []string {
	t.Helper()
	wantComment := regexp.MustCompile(`#\s*want(-file)?:\s*(.*)$`)
	var out []string
	for i, l := range strings.Split(string(data), "\n") {
		m := wantComment.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		line := i + 1
		if m[1] != "" {
			line = 0
		}
		for _, p := range strings.Fields(m[2]) {
			out = append(out, fmt.Sprintf("%d %s", line, p))
		}
	}
	if len(out) == 0 {
		t.Fatal("test file has no # want: annotations")
	}
	sort.Strings(out)
	return out
}

func locations(errs Errors) []string {
	out := make([]string, len(errs))
	for i, e := range errs {
		out[i] = fmt.Sprintf("%d %s", e.Line, e.Path)
	}
	sort.Strings(out)
	return out
}

// TestErrorClasses pins every error class the loader must report to a test
// file, so dropping a class's file (or its check) fails here.
func TestErrorClasses(t *testing.T) {
	classes := []struct{ class, file, msg string }{
		{"syntax error", "syntax.yaml", "did not find expected '-' indicator"},
		{"syntax error in a plain value", "syntax_colon.yaml", "mapping values are not allowed in this context"},
		{"tab indentation", "syntax_tab.yaml", "indent with spaces"},
		{"empty file", "empty.yaml", "holds no configuration"},
		{"several documents", "multi_document.yaml", "more than one YAML document"},
		{"root not a mapping", "not_mapping.yaml", "expected a mapping of sections"},
		{"unknown alias", "unknown_anchor.yaml", "unknown anchor"},
		{"alias cycle", "alias_cycle.yaml", "contains itself"},
		{"unknown key", "unknown_keys.yaml", `unknown key "helth" (hint: did you mean "health"?`},
		{"duplicate key", "duplicate_keys.yaml", `duplicate key "port"`},
		{"wrong type", "wrong_types.yaml", `expected an integer, got the string "80"`},
		{"bad IP", "bad_ips.yaml", `"10.0.0.300" is not an IP address`},
		{"bad duration", "bad_durations.yaml", `"1" is not a duration`},
		{"missing director.name", "missing_required.yaml", "director.name: required"},
		{"missing service name", "missing_required.yaml", "services[0].name: required"},
		{"missing service vip", "missing_required.yaml", "services[0].vip: required"},
		{"missing service port", "missing_required.yaml", "services[1].port: required"},
		{"missing bgp asn", "missing_required.yaml", "bgp.asn: required"},
		{"missing bgp router_id", "missing_required.yaml", "bgp.router_id: required"},
		{"missing peer address", "missing_required.yaml", "bgp.peers[0].address: required"},
		{"missing peer asn", "missing_required.yaml", "bgp.peers[1].asn: required"},
		{"duplicate service name", "duplicate_services.yaml", `duplicate service name "web"`},
		{"duplicate VIP:port:protocol", "duplicate_services.yaml", "tcp 198.18.0.10:80 is already served by services[0]"},
		{"backend is a VIP", "backend_is_vip.yaml", "services[1].backends[0].address: 198.18.0.10 is a VIP"},
		{"backend family", "backend_family.yaml", "is not of the same address family as the VIP"},
		{"DR port change", "dr_port.yaml", "which dr forwarding cannot do (hint:"},
		{"weight range", "weights.yaml", "65536 is out of range (0..65535)"},
		{"timeout >= interval", "health_timing.yaml", "timeout 1s is not shorter than the interval 1s"},
		{"rise < 1", "health_timing.yaml", "health.rise: 0 is out of range"},
		{"fall < 1", "health_timing.yaml", "health.fall: -2 is out of range"},
		{"unknown scheduler", "scheduler.yaml", "valid: rr, wrr, lc, wlc, lblc, lblcr, dh, sh, sed, nq, fo, ovf, mh, twos"},
		{"scheduler flag misfit", "scheduler.yaml", `flag "mh-port" does not fit scheduler "sh"`},
		{"min_healthy > targets", "min_healthy.yaml", "3 is more than the 2 health targets"},
		{"min_healthy of a local service", "min_healthy.yaml", "2 is more than the 1 health targets"},
		{"min_healthy < 0", "min_healthy.yaml", "min_healthy: -1 is negative"},
		{"invalid health type", "health_types.yaml", `unknown health check type "icmp"`},
		{"dns without query", "health_types.yaml", "required for a dns check"},
		{"exec without command", "health_types.yaml", "required for an exec check"},
		{"udp without payload", "health_types.yaml", "required for a udp check"},
		{"http path without /", "health_types.yaml", `"healthz" does not start with /`},
		{"status code range", "health_types.yaml", "600 is not an HTTP status code (100..599)"},
		{"key of another check type", "health_types.yaml", "health.path: not used by tcp checks"},
		{"malformed community", "communities.yaml", `"a:b" is not a community`},
		{"malformed large community", "communities.yaml", `"65100:1" is not a community`},
		{"announce bgp without section", "announce_bgp_without_section.yaml", "announce: bgp needs a bgp section"},
		{"announce bgp without peers", "announce_bgp_no_peers.yaml", "needs at least one peer"},
		{"hold time < 3s", "bgp_timers.yaml", "2s is below the 3s minimum"},
		{"keepalive >= hold time", "bgp_timers.yaml", "keepalive 3s is not shorter than hold_time 3s"},
		{"bfd multiplier 0", "bgp_timers.yaml", "bfd.multiplier: 0 is out of range (1..255)"},
		{"bfd interval < 10ms", "bgp_timers.yaml", "bfd.min_interval: 5ms is out of range"},
		{"MD5 password > 80 bytes", "bgp_timers.yaml", "the MD5 password is 81 bytes"},
		{"ttl_security with multihop", "bgp_timers.yaml", "ttl_security and multihop_ttl are both set"},
		{"IPv6 VIP without ipv6 peer", "ipv6_no_peer.yaml", "no BGP peer carries ipv6"},
		{"shared VIP, different advertise", "shared_vip_advertise.yaml", "services sharing the VIP 198.18.0.10 announce it differently"},
		{"api.tcp partly set", "api_tcp_partial.yaml", "api.tcp.key: required when api.tcp is set"},
		{"unknown log format", "log.yaml", `unknown log format "logfmt"`},
		{"unknown log level", "log.yaml", `unknown log level "trace"`},
		{"bad sysctl name", "sysctls.yaml", `"../../kernel/panic" is not a sysctl name`},
		{"hold_down of a year", "absurd_durations.yaml", "director.hold_down: 8760h is longer than the 10m allowed"},
		{"graceful_shutdown of centuries", "absurd_durations.yaml", "director.graceful_shutdown: 2000000h is longer than the 10m allowed"},
		{"linger of centuries", "absurd_durations.yaml", "director.linger: 2000000h is longer than the 10m allowed"},
		{"health interval of weeks", "absurd_durations.yaml", "services[0].health.interval: 1000h is longer than the 1h allowed"},
		{"peer is the router id", "bgp_peer_self.yaml", "bgp.peers[1].address: 10.0.1.11 is this director's bgp.router_id"},
		{"peer is a local address", "bgp_peer_self.yaml", "bgp.peers[2].address: 10.0.2.11 is this director's own address"},
		{"peer is a VIP", "bgp_peer_self.yaml", "bgp.peers[3].address: 198.18.0.10 is a VIP of this director"},
		{"tab on a later line", "syntax_tab_late.yaml", "syntax_tab_late.yaml:8: yaml: found a tab character that violates indentation (hint: YAML does not allow tabs"},
		{"invalid UTF-8", "bad_utf8.yaml", "bad_utf8.yaml:5: yaml: byte 0xe9 at column 27 is not valid UTF-8"},
		{"control character", "control_char.yaml", "control_char.yaml:4: yaml: control character U+0001"},
		{"merge-key bomb", "merge_bomb.yaml", "merge_bomb.yaml:31: services[5].health: aliases expand this file"},
	}
	for _, c := range classes {
		t.Run(c.class, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/bad", c.file))
			if err != nil {
				t.Fatal(err)
			}
			_, err = Parse(c.file, data)
			if err == nil || !strings.Contains(err.Error(), c.msg) {
				t.Errorf("Parse(%s) errors do not contain %q:\n%v", c.file, c.msg, err)
			}
		})
	}
}
