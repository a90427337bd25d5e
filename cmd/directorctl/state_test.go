package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control/controltest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
	"github.com/anycast-director/director/statedir"
)

// daemonProc is one directord process of a test.
type daemonProc struct {
	t      *testing.T
	cmd    *exec.Cmd
	mu     sync.Mutex
	logs   bytes.Buffer
	exited chan struct{}
	err    error
}

// startDaemonProc starts bin on cfgPath; the test's end kills it if it is
// still running and prints its log if the test failed.
func startDaemonProc(t *testing.T, bin, cfgPath string) *daemonProc {
	t.Helper()
	d := &daemonProc{t: t, exited: make(chan struct{})}
	d.cmd = exec.Command(bin, "run", "-config", cfgPath)
	d.cmd.Stdout = &lockedWriter{w: &d.logs, mu: &d.mu}
	d.cmd.Stderr = d.cmd.Stdout
	if err := d.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { d.err = d.cmd.Wait(); close(d.exited) }()
	t.Cleanup(func() {
		d.kill()
		if t.Failed() {
			t.Logf("directord log:\n%s", d.log())
		}
	})
	return d
}

func (d *daemonProc) log() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.logs.String()
}

// kill ends the process with SIGKILL, like a crash.
func (d *daemonProc) kill() {
	select {
	case <-d.exited:
	default:
		d.cmd.Process.Kill()
		<-d.exited
	}
}

// stop sends SIGTERM and waits for a clean exit.
func (d *daemonProc) stop() {
	d.t.Helper()
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.exited:
	case <-time.After(20 * time.Second):
		d.t.Fatalf("directord did not stop within 20 s of SIGTERM")
	}
	if d.err != nil {
		d.t.Errorf("directord exited with %v after SIGTERM", d.err)
	}
}

// TestRealDaemonStateAcrossRestarts runs the real directord with local
// services and drives it with directorctl through restarts: overrides and
// the configuration history survive a restart; reloading an unchanged file
// adds no version; configs show and diff, rollback --dry-run; a rollback
// writes the file (the old one kept) so a SIGHUP keeps it; and a corrupt
// state file after a crash neither stops the daemon nor goes unnoticed.
func TestRealDaemonStateAcrossRestarts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("directord binds VIPs to lo, which needs root (CAP_NET_ADMIN); run as root")
	}
	bin, err := daemonBinary()
	if err != nil {
		t.Fatal(err)
	}
	dir := controltest.ShortTempDir(t)
	sock := filepath.Join(dir, "d.sock")
	web := startListener(t, "127.0.0.1:0")
	api := startListener(t, "127.0.0.1:0")
	metricsAddr := startListener(t, "127.0.0.1:0")
	metricsAddr.down()
	vipBase := "127.76." + strconv.Itoa(os.Getpid()%250+1)
	webVIP, apiVIP := vipBase+".10", vipBase+".11"
	cfgPath := filepath.Join(dir, "directord.yaml")
	write := func(c string) {
		if err := os.WriteFile(cfgPath, []byte(c), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	ok := func(args ...string) string {
		t.Helper()
		out, stderr, code := ctl(t, nil, append([]string{"--socket", sock}, args...)...)
		if code != 0 {
			t.Fatalf("directorctl %v: exit %d\n%s%s", args, code, out, stderr)
		}
		return out
	}
	v1 := daemonConfig(dir, metricsAddr.addr, web, api, vipBase, "200ms", true)
	v2 := daemonConfig(dir, metricsAddr.addr, web, api, vipBase, "300ms", true)
	write(v1)
	d := startDaemonProc(t, bin, cfgPath)
	waitStatus(t, sock, "both VIPs advertised", func(s *directorv1.GetStatusResponse) bool {
		return vipOf(s, webVIP).GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED &&
			vipOf(s, apiVIP).GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED
	})

	// Overrides of three kinds, then reloads: an unchanged file twice (no
	// new version), a changed one.
	ok("drain", "127.0.0.1", "--service", "web", "--reason", "disk swap", "--for", "2h")
	ok("weight", "127.0.0.1", "3", "--service", "api", "--reason", "smaller box")
	ok("vip", "disable", apiVIP, "--reason", "maintenance")
	for range 2 {
		d.cmd.Process.Signal(syscall.SIGHUP)
		if out := ok("reload"); !strings.Contains(out, "loaded configuration version 1 (") {
			t.Fatalf("reloading the unchanged file:\n%s", out)
		}
	}
	write(v2)
	ok("reload")
	before := waitStatus(t, sock, "version 2", func(s *directorv1.GetStatusResponse) bool { return s.GetConfig().GetVersion() == 2 })

	// Restart (SIGTERM, start): the overrides and the history are back.
	d.stop()
	d = startDaemonProc(t, bin, cfgPath)
	after := waitStatus(t, sock, "restored", func(s *directorv1.GetStatusResponse) bool {
		return len(s.GetVips()) == 2 && !s.GetLearning()
	})
	if got, want := overrideLines(after), overrideLines(before); got != want {
		t.Errorf("overrides after the restart:\n%s\nwant:\n%s", got, want)
	}
	if v := after.GetConfig(); v.GetVersion() != 2 || v.GetDigest() != config.Digest([]byte(v2)) {
		t.Errorf("running configuration after the restart = %v, want version 2 (the same file)", v)
	}
	if st := after.GetState(); !st.GetRestored() || st.GetLost() {
		t.Errorf("state after the restart = %v", st)
	}
	if b := backendIn(after, "web"); !b.GetDraining() || vipOf(after, apiVIP).GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED {
		t.Errorf("after the restart: web draining %v, api %v; want the drain and the disabled VIP in force", b.GetDraining(), vipOf(after, apiVIP))
	}
	if out := ok("configs"); !regexp.MustCompile(`(?m)^1\s+\S+\s+.*\bstart\b`).MatchString(out) ||
		!regexp.MustCompile(`(?m)^2\s+\S+\s+.*uid=\d+.*\breload\b.*\(running\)`).MatchString(out) {
		t.Errorf("configs after the restart:\n%s", out)
	}

	// configs show and diff.
	if out := ok("configs", "show", "1"); out != v1 {
		t.Errorf("configs show 1 differs from the file of version 1:\n%s", out)
	}
	diff := ok("configs", "diff", "1", "2")
	if !strings.Contains(diff, "-    health: { type: tcp, interval: 200ms") || !strings.Contains(diff, "+    health: { type: tcp, interval: 300ms") {
		t.Errorf("configs diff 1 2:\n%s", diff)
	}
	if again := ok("configs", "diff", "1"); again != diff {
		t.Errorf("configs diff 1 (against the running one) differs from diff 1 2:\n%s", again)
	}

	// rollback --dry-run changes nothing and shows the diff and the plan.
	out := ok("rollback", "--dry-run")
	if !strings.Contains(out, "dry run: rollback to version 1") || !strings.Contains(out, "+    health: { type: tcp, interval: 200ms") ||
		!regexp.MustCompile(`keep\s+health\s+api`).MatchString(out) {
		t.Errorf("rollback --dry-run:\n%s", out)
	}
	if s, _ := daemonStatus(t, sock); s.GetConfig().GetVersion() != 2 {
		t.Errorf("the dry run changed the running version to %d", s.GetConfig().GetVersion())
	}

	// rollback writes the file, keeps the old one, and a SIGHUP keeps it.
	out = ok("rollback", "--reason", "the 300ms interval was a mistake")
	m := regexp.MustCompile(`now version 3 \(` + config.Digest([]byte(v1)) + `\)\nwrote it to (\S+); the replaced file is kept as (\S+)\n`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("rollback:\n%s", out)
	}
	if data, _ := os.ReadFile(cfgPath); string(data) != v1 {
		t.Errorf("after the rollback the configuration file holds:\n%s", data)
	}
	if data, _ := os.ReadFile(m[2]); string(data) != v2 {
		t.Errorf("the backup %s holds:\n%s", m[2], data)
	}
	if fi, err := os.Stat(cfgPath); err != nil || fi.Mode().Perm() != 0o640 {
		t.Errorf("the rewritten file's mode: %v, %v; want the original 0640", fi.Mode(), err)
	}
	d.cmd.Process.Signal(syscall.SIGHUP)
	if out := ok("reload"); !strings.Contains(out, "loaded configuration version 3 ("+config.Digest([]byte(v1))) {
		t.Errorf("reload after the rollback:\n%s", out)
	}

	// A crash, then a state file that cannot be read: the daemon starts
	// from its configuration alone and says so.
	d.kill()
	if err := os.WriteFile(filepath.Join(dir, "state", statedir.FileName), []byte(`{"format": 1, "overr`), 0o600); err != nil {
		t.Fatal(err)
	}
	d = startDaemonProc(t, bin, cfgPath)
	s := waitStatus(t, sock, "running without state", func(s *directorv1.GetStatusResponse) bool {
		return vipOf(s, apiVIP).GetState() == directorv1.VIPState_VIP_STATE_ADVERTISED
	})
	st := s.GetState()
	if !st.GetLost() || !strings.Contains(st.GetLoadError(), "corrupt or truncated") || len(s.GetOverrides()) != 0 {
		t.Errorf("state after a corrupt file: %v, overrides %v", st, s.GetOverrides())
	}
	if _, err := os.Stat(st.GetSetAside()); err != nil {
		t.Errorf("the bad file is not kept aside: %v", err)
	}
	if got := metricValue(t, metricsAddr.addr, "directord_state_lost"); got != 1 {
		t.Errorf("directord_state_lost = %v, want 1", got)
	}
	if out := ok("status"); !strings.Contains(out, "LOST AT START") {
		t.Errorf("status does not say the state was lost:\n%s", out)
	}
	if !strings.Contains(d.log(), "saved state lost") {
		t.Errorf("the log does not say the state was lost")
	}
}

// overrideLines renders the overrides for comparison.
func overrideLines(s *directorv1.GetStatusResponse) string {
	var b strings.Builder
	for _, o := range s.GetOverrides() {
		n := o.GetNote()
		b.WriteString(strings.Join([]string{o.GetKind().String(), o.GetBackend().String(), o.GetVip(), strconv.Itoa(int(o.GetWeight())),
			n.GetReason(), n.GetWho(), n.GetCreated().AsTime().String(), n.GetExpires().AsTime().String()}, " | ") + "\n")
	}
	return b.String()
}
