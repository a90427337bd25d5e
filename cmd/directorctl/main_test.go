package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/anycast-director/director/internal/syncbuf"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/control"
	"github.com/anycast-director/director/control/controltest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// binary is the directorctl built once for the package's tests.
var binary string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "directorctl-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "directorctl")
	cmd := exec.Command("go", "build", "-o", binary, ".")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "build directorctl:", err)
		return 1
	}
	return m.Run()
}

// ctl runs the binary against the harness's socket.
func ctl(t *testing.T, h *controltest.Harness, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	if h != nil {
		args = append([]string{"--socket", h.Sock}, args...)
	}
	cmd := exec.Command(binary, args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case errors.As(err, &exit):
		code = exit.ExitCode()
	case err != nil:
		t.Fatalf("run directorctl %v: %v", args, err)
	}
	return o.String(), e.String(), code
}

func TestExitCodesAndMessages(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	tests := []struct {
		name   string
		args   []string
		harn   bool
		code   int
		stderr string
	}{
		{"status", []string{"status"}, true, 0, ""},
		{"unknown flag", []string{"status", "--bogus"}, true, 2, "unknown flag: --bogus"},
		{"unknown command", []string{"frobnicate"}, true, 2, `unknown command "frobnicate"`},
		{"missing argument", []string{"drain"}, true, 2, "expected one backend address, got 0 argument(s)"},
		{"bad address", []string{"drain", "10.0.0.300"}, true, 2, `backend address "10.0.0.300" is not an IP address: use the address as in the configuration, e.g. 10.0.2.21`},
		{"bad weight", []string{"weight", "10.0.2.21", "70000"}, true, 2, `weight "70000" is not a number from 0 to 65535`},
		{"bad output", []string{"status", "-o", "yaml"}, true, 2, `--output "yaml" is not supported: use table or json`},
		{"bad flavor", []string{"router-config", "--flavor", "cisco"}, true, 2, `--flavor "cisco" is not supported`},
		{"server: unknown backend", []string{"drain", "10.0.2.99"}, true, 1, "drain 10.0.2.99: no backend matches */10.0.2.99:*"},
		{"server: unknown service", []string{"drain", "10.0.2.21", "--service", "nope"}, true, 1, `no service named "nope": use one of web, api`},
		{"server: malformed (reason)", []string{"drain", "10.0.2.21", "--reason", "a\tb"}, true, 2, "reason contains a control character"},
		{"server: no previous config", []string{"rollback"}, true, 1, "there is no previous configuration"},
		// One rule for every override's expiry (rules.CheckExpiry), with the
		// server's words: --for 0 used to mean "never", and a director drain
		// of a year and a second used to pass.
		{"--for 0", []string{"drain", "10.0.2.21", "--for", "0"}, true, 2, "--for: expiry 0s is not positive: leave the expiry out for an override that never lapses"},
		{"--for over a year", []string{"director", "drain", "--for", "8760h1s"}, true, 2, "--for: expiry 8760h0m1s is longer than a year (8760h)"},
		{"vip --for negative", []string{"vip", "disable", "198.18.0.10", "--for", "-1h"}, true, 2, "--for: expiry -1h0m0s is not positive"},
		{"--clear with --for", []string{"weight", "10.0.2.21", "--clear", "--for", "1h"}, true, 2, "--clear removes overrides now"},
		{"no daemon", []string{"--socket", "/nonexistent/d.sock", "status"}, false, 1, "cannot reach directord at /nonexistent/d.sock"},
		{"addr without certificates", []string{"--addr", "127.0.0.1:1", "status"}, false, 2, "--addr needs mutual TLS: give --cert, --key and --ca"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hh := h
			if !tt.harn {
				hh = nil
			}
			_, stderr, code := ctl(t, hh, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.stderr) {
				t.Errorf("exit %d, stderr:\n%s\nwant exit %d and stderr containing %q", code, stderr, tt.code, tt.stderr)
			}
		})
	}
	if o := h.Loop.Status().Overrides; len(o.Drained) != 0 || o.Director != nil || len(o.DisabledVIPs) != 0 {
		t.Errorf("failed commands left overrides: %+v", o)
	}
}

// TestRelativeSocket: --socket takes a path relative to the working
// directory (it used to fail with "invalid (non-empty) authority" and a
// hint about mutual TLS).
func TestRelativeSocket(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	cmd := exec.Command(binary, "--socket", filepath.Base(h.Sock), "status")
	cmd.Dir = filepath.Dir(h.Sock)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Director t1: serving") {
		t.Fatalf("directorctl --socket %s status (in %s): %v\n%s", filepath.Base(h.Sock), cmd.Dir, err, out)
	}
	cmd = exec.Command(binary, "--socket", "nothing/here.sock", "status")
	cmd.Dir = t.TempDir()
	out, _ = cmd.CombinedOutput()
	if want := "cannot reach directord at nothing/here.sock"; !strings.Contains(string(out), want) || strings.Contains(string(out), "TLS") {
		t.Errorf("a missing relative socket: %s\nwant %q and no TLS hint", out, want)
	}
}

func TestStatusJSONAndTable(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	out, stderr, code := ctl(t, h, "status", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	var resp struct {
		Director       string
		Vips, Services []any
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatalf("status -o json does not parse: %v\n%s", err, out)
	}
	if resp.Director != "t1" || len(resp.Vips) != 2 || len(resp.Services) != 2 {
		t.Errorf("json status = director %q, %d VIPs, %d services", resp.Director, len(resp.Vips), len(resp.Services))
	}
	table, _, code := ctl(t, h, "status")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	for _, want := range []string{
		"Director t1: serving, 2 of 2 VIPs advertised",
		"198.18.0.10  advertised",
		"Service web  tcp/198.18.0.10:80  dr  mh",
		"10.0.2.21:443  up      2/2",
		"192.0.2.1  65000  established",
		"IPVS     fingerprint 2/",
		"IPVS sysctls: expire_nodest_conn=1 sloppy_tcp=1",
	} {
		if !strings.Contains(table, want) {
			t.Errorf("status table lacks %q:\n%s", want, table)
		}
	}
}

func TestOverridesThroughTheCLI(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	steps := []struct {
		args   []string
		stdout string
		check  func() bool
	}{
		{[]string{"drain", "10.0.2.21", "--service", "web", "--reason", "TICKET-7", "--for", "1h"}, "draining web/10.0.2.21:80 until ",
			func() bool { return h.World.Weight(controltest.WebKey(), ap("10.0.2.21:80")) == 0 }},
		{[]string{"enable", "10.0.2.21", "--service", "web"}, "lifted the drain on web/10.0.2.21:*\n",
			func() bool { return h.World.Weight(controltest.WebKey(), ap("10.0.2.21:80")) == 1 }},
		{[]string{"weight", "10.0.2.31", "9"}, "weight 9 on api/10.0.2.31:443",
			func() bool { return h.World.Weight(controltest.APIKey(), ap("10.0.2.31:443")) == 9 }},
		{[]string{"weight", "10.0.2.31", "--clear"}, "cleared the weight override */10.0.2.31:* weight 9; api/10.0.2.31:443 back to the configured weight",
			func() bool { return h.World.Weight(controltest.APIKey(), ap("10.0.2.31:443")) == 1 }},
		// The help's own example: set with --service, clear without. The
		// clear used to print success and change nothing.
		{[]string{"weight", "10.0.2.21", "5", "--service", "web"}, "weight 5 on web/10.0.2.21:80",
			func() bool { return h.World.Weight(controltest.WebKey(), ap("10.0.2.21:80")) == 5 }},
		{[]string{"weight", "10.0.2.21", "--clear"}, "cleared the weight override web/10.0.2.21:* weight 5",
			func() bool { return h.World.Weight(controltest.WebKey(), ap("10.0.2.21:80")) == 1 }},
		{[]string{"weight", "10.0.2.21", "--clear"}, "no weight override on 10.0.2.21 to clear; nothing changed",
			func() bool { return h.World.Weight(controltest.WebKey(), ap("10.0.2.21:80")) == 1 }},
		{[]string{"drain", "10.0.2.21", "--service", "api", "--port", "443"}, "draining api/10.0.2.21:443",
			func() bool { return h.World.Weight(controltest.APIKey(), ap("10.0.2.21:443")) == 0 }},
		{[]string{"enable", "10.0.2.21", "--service", "web"}, "no drain on 10.0.2.21 to lift with --service web; nothing changed",
			func() bool { return h.World.Weight(controltest.APIKey(), ap("10.0.2.21:443")) == 0 }},
		{[]string{"enable", "10.0.2.21"}, "lifted the drain on api/10.0.2.21:443\n",
			func() bool { return h.World.Weight(controltest.APIKey(), ap("10.0.2.21:443")) == 2 }},
		{[]string{"vip", "disable", "198.18.0.11", "--reason", "move"}, "VIP 198.18.0.11 disabled",
			func() bool { return !h.World.Advertised(controltest.APIKey().VIP) }},
		{[]string{"vip", "enable", "198.18.0.11"}, "VIP 198.18.0.11 enabled",
			func() bool { return h.World.Advertised(controltest.APIKey().VIP) }},
		{[]string{"director", "drain", "--reason", "maintenance"}, "director drained",
			func() bool { return !h.World.Advertised(controltest.WebKey().VIP) }},
		{[]string{"director", "undrain"}, "director undrained",
			func() bool { return h.World.Advertised(controltest.WebKey().VIP) }},
	}
	for _, s := range steps {
		out, stderr, code := ctl(t, h, s.args...)
		if code != 0 || !strings.Contains(out, s.stdout) {
			t.Fatalf("directorctl %v: exit %d, stdout %q, stderr %q; want stdout containing %q", s.args, code, out, stderr, s.stdout)
		}
		h.WaitWorld(strings.Join(s.args, " "), s.check)
	}
}

// TestReloadDryRunSaysWhichVerdictsAreKept: a timing-only change keeps the
// verdicts, a changed check starts them over, and the dry run says which.
func TestReloadDryRunSaysWhichVerdictsAreKept(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	timing := strings.Replace(controltest.BaseConfig, "interval: 1s, timeout: 500ms", "interval: 2s, timeout: 500ms, rise: 4", 1)
	if timing == controltest.BaseConfig {
		t.Fatal("BaseConfig has no health block to change")
	}
	h.SetFile(timing)
	// Columns are padded: compare with single spaces.
	oneSpace := func(s string) string { return strings.Join(strings.Fields(s), " ") }
	out, _, code := ctl(t, h, "reload", "--dry-run")
	if code != 0 || strings.Contains(out, "destination") || strings.Contains(out, "route") ||
		!strings.Contains(oneSpace(out), "keep health web 10.0.2.21:80 verdict up kept: interval 1s -> 2s, rise 2 -> 4; applies from the next probe") {
		t.Fatalf("reload --dry-run after a timing change: exit %d; want only health keep lines:\n%s", code, out)
	}
	h.SetFile(strings.Replace(controltest.BaseConfig, "type: tcp, interval: 1s", "type: tcp, port: 8080, interval: 1s", 1))
	out, _, code = ctl(t, h, "reload", "--dry-run")
	if code != 0 || !strings.Contains(oneSpace(out), "reset health web 10.0.2.21:80 what is probed changed (target 10.0.2.21:80 -> 10.0.2.21:8080)") {
		t.Fatalf("reload --dry-run after a port change: exit %d\n%s", code, out)
	}
}

func TestReloadRollbackConfigsAndWatch(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	h.SetFile(controltest.SecondConfig)
	out, _, code := ctl(t, h, "reload", "--dry-run")
	if code != 0 || !strings.Contains(out, "dry run against running version 1") ||
		!strings.Contains(out, "add     destination  tcp/198.18.0.10:80 -> 10.0.2.23:80") {
		t.Fatalf("reload --dry-run: exit %d\n%s", code, out)
	}
	if v := h.Loop.Status().Config.Version; v != 1 {
		t.Fatalf("dry run changed the version to %d", v)
	}
	if out, _, code = ctl(t, h, "reload"); code != 0 || !strings.Contains(out, "loaded configuration version 2") {
		t.Fatalf("reload: exit %d\n%s", code, out)
	}
	if out, _, code = ctl(t, h, "rollback"); code != 0 || !strings.Contains(out, "now version 3") {
		t.Fatalf("rollback: exit %d\n%s", code, out)
	}
	out, _, code = ctl(t, h, "configs", "-o", "json")
	var list struct {
		Configs []any
		Running int
	}
	if err := json.Unmarshal([]byte(out), &list); code != 0 || err != nil || len(list.Configs) != 3 || list.Running != 3 {
		t.Fatalf("configs -o json: exit %d, %v\n%s", code, err, out)
	}
	if out, _, code = ctl(t, h, "configs"); code != 0 || !strings.Contains(out, "(running)") {
		t.Errorf("configs: exit %d\n%s", code, out)
	}
	// announce: none gives no router configuration: a precondition with the
	// reason (it used to end in "(Internal)").
	if _, stderr, code := ctl(t, h, "router-config", "--flavor", "bird"); code != 1 ||
		!strings.Contains(stderr, "directorctl: router-config: the running configuration gives no router configuration: no director announces to this router") {
		t.Errorf("router-config: exit %d %q", code, stderr)
	}
	// A broken file: the errors, once, without "reload: reload:".
	h.SetFile(controltest.BaseConfig + "  - name: [broken\n")
	if _, stderr, code := ctl(t, h, "reload"); code != 1 || strings.Contains(stderr, "reload: reload:") ||
		!strings.Contains(stderr, "directorctl: reload: director.yaml has errors; nothing changed:\ndirector.yaml:") {
		t.Errorf("reload of a broken file: exit %d\n%s", code, stderr)
	}

	// The reloads and the rollback are events; watch --all replays them.
	out, stderr, code := ctl(t, h, "watch", "--all", "--count", "2", "-o", "json")
	if code != 0 {
		t.Fatalf("watch: exit %d: %s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 {
		t.Fatalf("watch --count 2 printed %d lines:\n%s", len(lines), out)
	}
	var first struct{ Seq int }
	if err := json.Unmarshal([]byte(lines[0]), &first); err != nil || first.Seq != 1 {
		t.Fatalf("first event %q: %v", lines[0], err)
	}
	out, _, code = ctl(t, h, "watch", "--after", "1", "--count", "1")
	if code != 0 || !strings.HasPrefix(out, "#2 ") {
		t.Errorf("watch --after 1: exit %d, %q", code, out)
	}
	if out, _, code = ctl(t, nil, "completion", "bash"); code != 0 || !strings.Contains(out, "bash completion") {
		t.Errorf("completion bash: exit %d", code)
	}
}

func ap(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// TestWatchReconnectsAndResumes restarts the server under a running
// `directorctl watch`: it reconnects, learns that the new daemon's events are
// all new to it, and prints them.
func TestWatchReconnectsAndResumes(t *testing.T) {
	if headerAfterSeq != control.HeaderAfterSeq || headerEpoch != control.HeaderEpoch {
		t.Fatalf("header names %q, %q differ from the server's %q, %q", headerAfterSeq, headerEpoch, control.HeaderAfterSeq, control.HeaderEpoch)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	h := controltest.Start(t, controltest.Options{})
	sock := h.Sock
	var stdout, stderr lockedBuffer
	cmd := exec.Command(binary, "--socket", sock, "watch")
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-done
	})
	waitText := func(what string, buf *lockedBuffer, text string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(buf.String(), text) {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s\nstdout: %s\nstderr: %s", what, stdout.String(), stderr.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	time.Sleep(300 * time.Millisecond) // let watch connect (from now)
	if _, err := h.Client.DisableVIP(ctx, &directorv1.DisableVIPRequest{Vip: "198.18.0.10", Reason: "first"}); err != nil {
		t.Fatal(err)
	}
	waitText("the first event", &stdout, "disable VIP 198.18.0.10 (first)")
	h.Stop()
	waitText("the reconnect notice", &stderr, "reconnecting to resume after event")

	// A new daemon on the same socket: its event numbering starts again.
	h2 := controltest.Start(t, controltest.Options{Server: func(o *control.ServerOptions) { o.API.Socket = sock }})
	if _, err := h2.Client.DisableVIP(ctx, &directorv1.DisableVIPRequest{Vip: "198.18.0.11", Reason: "second"}); err != nil {
		t.Fatal(err)
	}
	waitText("the new daemon's event", &stdout, "disable VIP 198.18.0.11 (second)")
	waitText("the lost-events notice", &stderr, "are no longer held by directord (lost)")
}

// lockedBuffer is a goroutine-safe buffer for a child's output.
type lockedBuffer = syncbuf.Buffer

// TestDryRunShowsLocalService: reload --dry-run of a file that adds a local
// service lists it (it used to say "no changes").
func TestDryRunShowsLocalService(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	h.SetFile(controltest.BaseConfig + `  - name: dns
    vip: 198.18.0.53
    port: 53
    forwarding: local
`)
	out, stderr, code := ctl(t, h, "reload", "--dry-run")
	for _, want := range []string{"add     service  tcp/198.18.0.53:53  local service dns (no IPVS)", "add     route    198.18.0.53/32"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Errorf("reload --dry-run: exit %d, lacks %q:\n%s%s", code, want, out, stderr)
		}
	}
}

func TestStatusShowsSync(t *testing.T) {
	h := controltest.Start(t, controltest.Options{Config: controltest.BaseConfig + "ipvs:\n  sync: { interface: eth1, sync_id: 7 }\n"})
	table, _, code := ctl(t, h, "status")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	want := "IPVS sync: master eth1 id 7 224.0.0.81:8848 ttl 1 maxlen 1472; backup eth1 id 7 224.0.0.81:8848 ttl 1 maxlen 1472"
	if !strings.Contains(table, want) {
		t.Errorf("status table lacks %q:\n%s", want, table)
	}
	out, _, _ := ctl(t, h, "status", "-o", "json")
	var resp struct {
		Sync struct {
			Configured bool
			Daemons    []struct{ State, Interface string }
		}
	}
	if err := json.Unmarshal([]byte(out), &resp); err != nil {
		t.Fatal(err)
	}
	if !resp.Sync.Configured || len(resp.Sync.Daemons) != 2 || resp.Sync.Daemons[1].State != "backup" {
		t.Errorf("json sync = %+v", resp.Sync)
	}
	plain := controltest.Start(t, controltest.Options{})
	if table, _, _ := ctl(t, plain, "status"); strings.Contains(table, "IPVS sync") {
		t.Errorf("status without sync configured or running shows a sync line:\n%s", table)
	}
}
