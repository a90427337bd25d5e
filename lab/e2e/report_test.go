package e2e

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func TestReportMarkdown(t *testing.T) {
	flaps := 0
	r := &Report{
		Date: time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC), Commit: "abc123def456", Kernel: "6.1.0-56-amd64", Machine: "a test",
		Deploy: 30 * time.Second, Converged: 2 * time.Second,
		Spread: &Spread{Requests: 300, ByServer: map[string]int{"rs1": 100, "rs2": 200},
			Conns: map[string]map[string]uint64{"d1": {"rs1": 40, "rs2": 60}, "d2": {"rs1": 60, "rs2": 140}}},
		RealServer: &RealServerFail{Server: "rs3", Budget: 3500 * time.Millisecond, Quiesced: map[string]time.Duration{"d1": 2 * time.Second},
			Requests: 200, FailedBefore: 12, FailedAfter: 0},
		Loss: map[string][]LossPhase{
			"ours":     {{Event: "director killed", Open: 200, OnVictim: 60, Broken: 0, Converged: 100 * time.Millisecond}},
			"baseline": {{Event: "director killed", Open: 200, OnVictim: 55, Broken: 83, Converged: 150 * time.Millisecond}},
		},
		Operations: []Operation{{Event: "directord restarted", Director: "d1", Requests: 300, Opened: 200, RouteChanges: 2, Back: 4 * time.Second},
			{Event: "rollback, then SIGHUP", Director: "d2", NoTraffic: true, Note: "the rolled-back configuration stays"}},
		Flaps: &flaps,
		Checks: []Check{{Scenario: "spread", What: "every request answered", OK: true},
			{Scenario: "restart", What: "no request failed", OK: false, Detail: "3 of 500", Measured: true}},
	}
	var b bytes.Buffer
	r.Markdown(&b)
	md := b.String()
	for _, want := range []string{
		"on 2026-11-25 14:00 UTC from commit `abc123def456`: **PASS**, 2 checks",
		"kernel 6.1.0-56-amd64 (a test)",
		"| director killed | **0** / 200 (60) | **83** / 200 (55) | 0.10 s / 0.15 s |",
		"| real server rs3 killed (scheduler flags [mh-port, mh-fallback], the lab's) | 200 | 12 before every director quiesced it, **0** after | weight 0 on d1 2.00 s",
		"| d2 | 60 | 140 | 200 |",
		"- [x] spread: every request answered",
		"- restart: no request failed: measured, not asserted: did not hold (3 of 500)",
		"| directord restarted | d1 | **0** / 300 | **0** / 200 | **2** | 4.00 s |",
		"| rollback, then SIGHUP | d2 | - | - | the rolled-back configuration stays | - |",
		"while nothing failed (spread, real-server and reload scenarios): 0.",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q:\n%s", want, md)
		}
	}
	if strings.Contains(md, "router restarted") {
		t.Error("a scenario that did not run is in the report")
	}

	r.Checks = append(r.Checks, Check{Scenario: "drain", What: "no request failed", OK: false, Detail: "3 failed"})
	b.Reset()
	r.Markdown(&b)
	if r.AllOK() || !strings.Contains(b.String(), "**FAIL**") || !strings.Contains(b.String(), "- [ ] drain: no request failed (3 failed)") {
		t.Errorf("a failed check is not reported as a failure:\n%s", b.String())
	}
	if (&Report{}).AllOK() {
		t.Error("a report without checks counts as passed")
	}
}

// TestReportChurnAndDrift: the churn rows pair each change's runs without
// and with sync on one line; the drift rows show the repair time, failures
// and the repair's log and counter.
func TestReportChurnAndDrift(t *testing.T) {
	r := &Report{
		Churn: []ChurnRow{
			{Event: "real server added", Open: 200, OnVictim: 70, Broken: 23, Requests: 300, Failed: 4},
			{Event: "real server added", Sync: true, Open: 200, OnVictim: 66, Requests: 310, Failed: 3, Synced: 3500 * time.Millisecond},
			{Event: "real server drained", Sync: true, Open: 200, OnVictim: 61, BrokenByChange: 2, Synced: time.Second},
		},
		Drift: []DriftRow{{Event: "ipvsadm -C", Repaired: 4200 * time.Millisecond, Requests: 250, Failed: 30, Logged: 2, Counted: 2}},
	}
	var b bytes.Buffer
	r.Markdown(&b)
	md := b.String()
	for _, want := range []string{
		"| real server added | **23** / 200 (70) | **0** / 200 (66) | 4 of 300 / 3 of 310 | 3.50 s |",
		"| real server drained | not run | **0** / 200 (61), 2 more before the kill | - / 0 of 0 | 1.00 s |",
		"| ipvsadm -C | 4.20 s | **30** of 250 | 2 / 2 |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("RESULTS.md lacks %q:\n%s", want, md)
		}
	}
}
