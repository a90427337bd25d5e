package main

import (
	"os/exec"
	"strings"
	"testing"

	"github.com/anycast-director/director/control/controltest"
)

// jq runs the real jq with -e on input: the filter must yield true.
func jq(t *testing.T, input, filter string) {
	t.Helper()
	cmd := exec.Command("jq", "-e", filter)
	cmd.Stdin = strings.NewReader(input)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Errorf("jq -e '%s': %v: %s\ninput:\n%.3000s", filter, err, out, input)
	}
}

// TestJSONForJq: -o json gives jq users numbers as numbers, short state
// names and durations in seconds (docs/api.md, "JSON output"). It used to be
// protojson: "passes": "3", "VIP_STATE_ADVERTISED", "0.0047s".
func TestJSONForJq(t *testing.T) {
	if _, err := exec.LookPath("jq"); err != nil {
		t.Fatal("jq is needed (scripts/deps.sh installs it)")
	}
	h := controltest.Start(t, controltest.Options{})
	status, stderr, code := ctl(t, h, "status", "-o", "json")
	if code != 0 {
		t.Fatalf("status -o json: exit %d: %s", code, stderr)
	}
	for _, filter := range []string{
		`.reconcile.passes | type == "number" and . > 0`,
		`.reconcile.failed_passes == 0`,
		`.reconcile.last_duration | type == "number" and . >= 0 and . < 10`,
		`.config.version == 1`,
		`.config.loaded | test("^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:.]+Z$")`,
		`.drained == null and .learning == false and .shutting_down == false`,
		`[.vips[].state] == ["advertised", "advertised"]`,
		`.services[0] | .protocol == "tcp" and .forwarding == "dr" and .healthy == 2 and .min_healthy == 1`,
		`[.services[].backends[].health.state] | all(. == "up")`,
		`[.services[].backends[].health.latency] | all(type == "number")`,
		`[.services[].backends[].health.probes] | all(type == "number")`,
		`.services[0].counters.connections | type == "number"`,
		`.peers[0] | .state == "established" and .asn == 65000`,
		`.sysctls.sloppy_tcp == 1`,
		`.overrides == []`,
	} {
		jq(t, status, filter)
	}

	if _, stderr, code := ctl(t, h, "drain", "10.0.2.22", "--reason", "jq", "--for", "90m"); code != 0 {
		t.Fatalf("drain: exit %d: %s", code, stderr)
	}
	status, _, _ = ctl(t, h, "status", "-o", "json")
	jq(t, status, `.overrides[0] | .kind == "drain-backend" and .backend.address == "10.0.2.22" and .backend.port == 0 and .note.reason == "jq"`)

	events, stderr, code := ctl(t, h, "watch", "--all", "--count", "1", "-o", "json")
	if code != 0 {
		t.Fatalf("watch -o json: exit %d: %s", code, stderr)
	}
	jq(t, events, `.seq == 1 and (.kind | IN("health", "vip", "peer", "reload", "override", "director"))`)

	configs, _, _ := ctl(t, h, "configs", "-o", "json")
	jq(t, configs, `.running == 1 and .configs[0].version == 1 and (.configs[0].digest | length) == 12`)

	h.SetFile(controltest.SecondConfig)
	plan, _, _ := ctl(t, h, "reload", "--dry-run", "-o", "json")
	jq(t, plan, `.applied == false and .version.version == 1 and any(.changes[]; .kind == "destination" and .action == "add")`)
}
