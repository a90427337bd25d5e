package announcer

import (
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/statedir"
)

// daemonRun is one process lifetime of a loop with a state directory: it
// restores what dir holds, like directord at start.
type daemonRun struct {
	l      *Loop
	writer *statedir.Writer
	stop   func()
}

// startWithState runs a loop for cfg against w with the state directory
// dir, inside the current synctest bubble. stop ends it like SIGKILL after
// the last write: the loop stops, the writer finishes what it was given.
func startWithState(t *testing.T, cfg *config.Config, w *world, dir string) *daemonRun {
	t.Helper()
	w.mu.Lock()
	w.owned = map[ipvs.Key]bool{} // a new process's data plane owns nothing yet
	w.mu.Unlock()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	store := statedir.NewStore(dir)
	restored := store.Restore(time.Now())
	wr := statedir.NewWriter(store, log, statedir.WriterOptions{Restored: restored})
	l := New(cfg, w.deps(), log, Options{State: wr, Restored: &restored})
	stop := runLoop(t, l)
	return &daemonRun{l: l, writer: wr, stop: func() { stop(); wr.Close() }}
}

// yamlConfig parses a real configuration file (the history keeps files, so
// a rollback after a restart parses it again).
func yamlConfig(t *testing.T, services ...string) *config.Config {
	t.Helper()
	var b strings.Builder
	b.WriteString("director: { name: d1, announce: none, hold_down: 0s, drain_delay: 10s, resync_interval: 1s }\n")
	b.WriteString("api: { keep_configs: 3 }\nservices:\n")
	for i, vip := range services {
		fmt.Fprintf(&b, "  - { name: s%d, vip: %s, port: 80, health: { type: tcp }, backends: [ { address: 10.0.2.21 } ] }\n", i, vip)
	}
	cfg, err := config.Parse("/etc/directord/directord.yaml", []byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Source = "/etc/directord/directord.yaml"
	return cfg
}

// TestLoopOverridesSurviveRestart: a drain, a weight, a disabled VIP and a
// director drain set before a restart are in force after it, with who, why
// and the expiry; and each command returned only once it was on disk.
func TestLoopOverridesSurviveRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		cfg := twoServiceConfig()
		cfg.Director.HoldDown = 0
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		w.setHealth(healthOf(cfg, allUp))
		run := startWithState(t, cfg, w, dir)
		synctest.Wait()
		ctx := WithWho(t.Context(), "uid=0 pid=42")
		note := Note{Reason: "disk swap", Who: "uid=0 pid=42", Expires: time.Now().Add(2 * time.Hour)}
		steps := []func() error{
			func() error {
				return run.l.DrainBackend(ctx, BackendRef{Service: "web", Addr: mustAddr(t, "10.0.2.21")}, note)
			},
			func() error {
				return run.l.SetWeight(ctx, BackendRef{Addr: mustAddr(t, "10.0.2.22"), Port: 80}, 5, note)
			},
			func() error { return run.l.DisableVIP(ctx, mustAddr(t, "198.18.0.11"), Note{Reason: "maintenance"}) },
			func() error { return run.l.DrainDirector(ctx, Note{Reason: "rack work", Who: "alice"}) },
		}
		for i, step := range steps {
			if err := step(); err != nil {
				t.Fatalf("step %d: %v", i, err)
			}
			// Durable before the command returns.
			f, err := statedir.NewStore(dir).Read()
			if err != nil || f == nil || len(f.Overrides) != i+1 {
				t.Fatalf("after step %d returned the state file holds %v (%v)", i, f, err)
			}
		}
		before := run.l.Status().Overrides
		run.stop()

		time.Sleep(time.Minute) // the daemon is down for a while
		run = startWithState(t, cfg, w, dir)
		defer run.stop()
		synctest.Wait()
		st := run.l.Status()
		if diff := cmp.Diff(before, st.Overrides, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
			t.Errorf("overrides after the restart (-before +after):\n%s", diff)
		}
		if st.Drained == nil || st.Drained.Reason != "rack work" {
			t.Errorf("the director drain did not survive the restart: %+v", st.Drained)
		}
		if got, want := w.weights("198.18.0.10"), "10.0.2.21:80=0 10.0.2.22:80=5"; got != want {
			t.Errorf("kernel weights after the restart = %q, want %q", got, want)
		}
		time.Sleep(cfg.Director.GracefulShutdown + time.Second) // the graceful withdraw the drain began
		synctest.Wait()
		if got := w.advertised(); len(got) != 0 {
			t.Errorf("a drained director advertises %v after a restart", got)
		}
		if st.State == nil || !st.State.Restored || st.State.Lost {
			t.Errorf("status of the state directory = %+v, want restored", st.State)
		}

		time.Sleep(2 * time.Hour) // the drain and the weight expire after the restart too
		synctest.Wait()
		if got, want := w.weights("198.18.0.10"), "10.0.2.21:80=1 10.0.2.22:80=1"; got != want {
			t.Errorf("kernel weights after the overrides expired = %q, want %q", got, want)
		}
	})
}

// TestLoopHistorySurvivesRestart: the configuration history, with who and
// why, is there after a restart; starting from the file that was running
// adds no version; a rollback to a version from before the restart loads
// it from the state directory.
func TestLoopHistorySurvivesRestart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		a, b := yamlConfig(t, "198.18.0.10"), yamlConfig(t, "198.18.0.10", "198.18.0.11")
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		run := startWithState(t, a, w, dir)
		synctest.Wait()
		if _, err := run.l.Reload(WithReason(WithWho(t.Context(), "uid=0 pid=7"), "add s1"), b); err != nil {
			t.Fatal(err)
		}
		run.stop()

		b2 := yamlConfig(t, "198.18.0.10", "198.18.0.11") // the same file, read again at start
		run = startWithState(t, b2, w, dir)
		defer run.stop()
		synctest.Wait()
		hist, err := run.l.History(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, h := range hist {
			got = append(got, fmt.Sprintf("%d %s who=%q reason=%q", h.Version, h.Digest, h.Who, h.Reason))
		}
		want := []string{
			fmt.Sprintf("1 %s who=%q reason=%q", a.Digest, "", "start"),
			fmt.Sprintf("2 %s who=%q reason=%q", b.Digest, "uid=0 pid=7", "reload: add s1"),
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Fatalf("history after the restart (-want +got):\n%s", diff)
		}
		v, err := run.l.Rollback(t.Context(), 0)
		if err != nil {
			t.Fatalf("rollback to a version from before the restart: %v", err)
		}
		if v.Version != 3 || v.Digest != a.Digest || run.l.Running().Digest != a.Digest || len(run.l.Running().Services) != 1 {
			t.Errorf("rollback gave version %+v running %s, want version 3 with %s", v, run.l.Running().Digest, a.Digest)
		}
		content, _, err := run.l.KeptContent(t.Context(), 1)
		if err != nil || string(content) != string(a.Content) {
			t.Errorf("kept content of version 1 = %q, %v", content, err)
		}
	})
}

// TestLoopUnchangedReloadAddsNoVersion (issue 12): reloading an unchanged
// file keeps its version, so after more reloads than keep_configs the
// previous different configuration is still within reach of a rollback.
func TestLoopUnchangedReloadAddsNoVersion(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		a := twoServiceConfig()
		a.Digest = "aaaaaaaaaaaa"
		b := twoServiceConfig()
		b.Services = b.Services[:1]
		b.Digest = "bbbbbbbbbbbb"
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		l, stop := startLoop(t, a, w)
		defer stop()
		synctest.Wait()
		for i := range a.API.KeepConfigs + 2 {
			v, err := l.Reload(t.Context(), b)
			if err != nil {
				t.Fatal(err)
			}
			if v.Version != 2 {
				t.Fatalf("reload %d of the same file gave version %d, want 2", i+1, v.Version)
			}
		}
		hist, _ := l.History(t.Context())
		if len(hist) != 2 {
			t.Errorf("history = %+v, want versions 1 and 2", hist)
		}
		v, err := l.Rollback(t.Context(), 0)
		if err != nil || v.Digest != a.Digest {
			t.Fatalf("rollback = %+v, %v; want the previous different configuration %s", v, err, a.Digest)
		}
	})
}

// TestLoopRecordsServicesBeforeCreatingThem: an IPVS service is in the
// state directory's owned list before it exists in the kernel (the fake
// data plane checks every Apply), so a crash right after creating it
// cannot leave it unowned; a service that is gone leaves the list.
func TestLoopRecordsServicesBeforeCreatingThem(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		a := yamlConfig(t, "198.18.0.10")
		b := yamlConfig(t, "198.18.0.10", "198.18.0.11")
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		w.stateDir = dir
		w.setHealth(healthOf(b, allUp)) // a new service enters IPVS once its backends have a verdict
		run := startWithState(t, a, w, dir)
		defer run.stop()
		synctest.Wait()
		if _, err := run.l.Reload(t.Context(), b); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		if got := ownedOnDisk(t, dir); got != "tcp/198.18.0.10:80 tcp/198.18.0.11:80" {
			t.Errorf("owned after adding a service: %q", got)
		}
		if _, err := run.l.Reload(t.Context(), a); err != nil {
			t.Fatal(err)
		}
		time.Sleep(a.Director.DrainDelay + time.Second) // the removed service drains, then goes
		synctest.Wait()
		if _, ok := w.services[testKey("198.18.0.11")]; ok {
			t.Fatalf("the removed service is still in the kernel")
		}
		if got := ownedOnDisk(t, dir); got != "tcp/198.18.0.10:80" {
			t.Errorf("owned after the removed service went: %q", got)
		}
	})
}

// ownedOnDisk renders the state file's owned IPVS services.
func ownedOnDisk(t *testing.T, dir string) string {
	t.Helper()
	f, err := statedir.NewStore(dir).Read()
	if err != nil || f == nil {
		t.Fatalf("read the state file: %v, %v", f, err)
	}
	var keys []string
	for _, s := range f.Owned.IPVS {
		keys = append(keys, ipvs.Key{VIP: s.VIP, Port: s.Port, Protocol: s.Protocol}.String())
	}
	return strings.Join(keys, " ")
}

// TestLoopRemovesWhatItOwnedAtStart: a service removed from the
// configuration while the daemon was down drains at the next start and is
// then deleted; a service someone else created stays untouched throughout.
func TestLoopRemovesWhatItOwnedAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		both := twoServiceConfig()
		both.Director.HoldDown = 0
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		foreign := ipvsService("198.18.0.99", "10.9.9.9:80=1")
		w.services[foreign.Key] = foreign
		w.setHealth(healthOf(both, allUp))
		run := startWithState(t, both, w, dir)
		synctest.Wait()
		run.stop()

		webOnly := twoServiceConfig()
		webOnly.Services = webOnly.Services[:1]
		webOnly.Director.HoldDown = 0
		run = startWithState(t, webOnly, w, dir)
		defer run.stop()
		synctest.Wait()
		if got := w.weights("198.18.0.11"); got != "10.0.2.31:80=0" {
			t.Errorf("the service removed while down should drain at weight 0, kernel has %q", got)
		}
		time.Sleep(webOnly.Director.DrainDelay + time.Second)
		synctest.Wait()
		if _, ok := w.services[testKey("198.18.0.11")]; ok {
			t.Errorf("the service removed while the daemon was down is still in the kernel after the drain delay")
		}
		if got := w.weights("198.18.0.99"); got != "10.9.9.9:80=1" {
			t.Errorf("someone else's service changed: %q", got)
		}
		if got := w.weights("198.18.0.10"); got != "10.0.2.21:80=1 10.0.2.22:80=1" {
			t.Errorf("the configured service = %q", got)
		}
	})
}

// TestLoopRunsWithoutLostState: a state file that cannot be used is set
// aside; the loop starts from its configuration alone and says so.
func TestLoopRunsWithoutLostState(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		if err := writeFile(dir+"/"+statedir.FileName, `{"format": 1, "overrides": [`); err != nil {
			t.Fatal(err)
		}
		cfg := twoServiceConfig()
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		w.setHealth(healthOf(cfg, map[string]health.State{"10.0.2.21": up, "10.0.2.22": up, "10.0.2.31": up}))
		run := startWithState(t, cfg, w, dir)
		defer run.stop()
		synctest.Wait()
		st := run.l.Status()
		if st.State == nil || !st.State.Lost || st.State.SetAside == "" || !strings.Contains(st.State.LoadError, "truncated") {
			t.Fatalf("status of a lost state = %+v", st.State)
		}
		if st.Passes == 0 || len(st.VIPs) != 2 {
			t.Errorf("the loop did not run from its configuration: %+v", st)
		}
	})
}

func writeFile(path, content string) error { return os.WriteFile(path, []byte(content), 0o600) }

// TestLoopRemovesOwnedEmptyServiceAtStart: a service the daemon owned that
// has no destinations left (nothing to drain) is deleted at the first pass
// once the configuration no longer has it.
func TestLoopRemovesOwnedEmptyServiceAtStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		dir := t.TempDir()
		both := twoServiceConfig()
		w := newWorld(t, "198.18.0.10", "198.18.0.11")
		w.setHealth(healthOf(both, allUp))
		run := startWithState(t, both, w, dir)
		synctest.Wait()
		run.stop()
		api := w.services[testKey("198.18.0.11")]
		api.Destinations = nil // its backends were removed before the daemon stopped
		w.services[api.Key] = api

		webOnly := twoServiceConfig()
		webOnly.Services = webOnly.Services[:1]
		run = startWithState(t, webOnly, w, dir)
		defer run.stop()
		synctest.Wait()
		if _, ok := w.services[api.Key]; ok {
			t.Errorf("the empty service owned before the restart is still in the kernel")
		}
	})
}
