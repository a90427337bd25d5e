package compare

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// Timing bounds the phases of a run.
type Timing struct {
	// Steady is the steady-state window over which CPU and probes are counted.
	Steady time.Duration
	// Settle is how long writes are still counted after a reload applied, to
	// catch what it disturbs later.
	Settle time.Duration
	// Limit bounds each wait (start-up, detection, recovery, reload, stop).
	Limit time.Duration
}

// runner measures the daemons in one topology.
type runner struct {
	s       Scenario
	t       Timing
	bins    Binaries
	topo    *topology
	view    *view
	writes  *writeCounter
	dir     string
	outDir  string
	profile bool
}

// base are the weights every run starts with; reloaded sets real server 1 to 2.
func (r *runner) base() Weights {
	w := make(Weights, r.s.RealServers)
	for j := range w {
		w[j] = 1
	}
	return w
}

func (r *runner) reloaded() Weights {
	w := r.base()
	w[1] = 2
	return w
}

// measure runs daemon kind through every phase and records what it did.
func (r *runner) measure(ctx context.Context, kind Daemon, rep int) Run {
	res := Run{Daemon: kind, Scenario: r.s.Name(), Rep: rep, StartInIPVS: -1, StartSettled: -1,
		Detect: -1, Recover: -1, Reload: -1, Stop: -1, Demanded: r.s.Demanded(kind)}
	fail := func(phase string, err error) {
		res.Errors = append(res.Errors, fmt.Sprintf("%s: %v", phase, err))
	}
	d, cfg, err := r.start(ctx, kind)
	if err != nil {
		fail("start", err)
		return res
	}
	defer func() {
		if d.alive() {
			d.kill()
		}
		if len(res.Errors) > 0 {
			res.Errors = append(res.Errors, "log tail: "+tail(d.output(), 1500))
		}
		r.save(fmt.Sprintf("%s-%s-%d.log", fileName(r.s.Name()), kind, rep+1), d.output())
	}()
	steps := []struct {
		name string
		f    func(context.Context, *daemon, string, *Run) error
	}{
		{"start-up", r.startUp}, {"steady state", r.steady}, {"detection", r.detect},
		{"reload", r.reload},
	}
	for _, st := range steps {
		if err := st.f(ctx, d, cfg, &res); err != nil {
			fail(st.name, err)
			return res
		}
	}
	took, err := d.stop(ctx, r.t.Limit)
	res.Stop = took.Seconds()
	if err != nil {
		fail("stop", err)
	}
	return res
}

// start writes the configuration with the base weights, empties IPVS and
// starts the daemon.
func (r *runner) start(ctx context.Context, kind Daemon) (*daemon, string, error) {
	dir := filepath.Join(r.dir, string(kind))
	if err := os.RemoveAll(dir); err != nil {
		return nil, "", err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, "", err
	}
	cfg := filepath.Join(dir, "config")
	if err := r.writeConfig(kind, cfg, r.base()); err != nil {
		return nil, "", err
	}
	if err := flushIPVS(ctx, r.topo.director); err != nil {
		return nil, "", err
	}
	d, err := startDaemon(kind, r.bins, r.topo.director, cfg, dir, nil)
	return d, cfg, err
}

// writeConfig writes kind's configuration with weights w atomically.
func (r *runner) writeConfig(kind Daemon, path string, w Weights) error {
	text := r.s.KeepalivedConfig(w)
	if kind == Directord {
		text = r.s.DirectordConfig(w, filepath.Dir(path))
	}
	tmp := path + ".new"
	if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// startUp waits until every service and real server is in IPVS, then until
// every weight is right.
func (r *runner) startUp(ctx context.Context, d *daemon, _ string, res *Run) error {
	w0, err := r.writes.read()
	if err != nil {
		return err
	}
	in, err := r.view.waitFor(ctx, r.t.Limit, table.complete, nil)
	if err != nil {
		return fmt.Errorf("not every service and real server in IPVS: %w", err)
	}
	res.StartInIPVS = in.Sub(d.started).Seconds()
	d.mark(d.cmd.Stdout, "saw every service and real server in IPVS", in)
	want := r.base()
	settled, err := r.view.waitFor(ctx, r.t.Limit, func(t table) bool { return t.matches(want) }, nil)
	if err != nil {
		return fmt.Errorf("weights not settled: %w", err)
	}
	res.StartSettled = settled.Sub(d.started).Seconds()
	d.mark(d.cmd.Stdout, "saw every weight right", settled)
	w1, err := r.writes.read()
	res.StartWrites = w1.Sub(w0)
	return err
}

// steady lets checks run for two intervals, then counts probes, CPU and IPVS
// writes over the steady window.
func (r *runner) steady(ctx context.Context, d *daemon, _ string, res *Run) error {
	if err := sleep(ctx, 2*r.s.Interval); err != nil {
		return err
	}
	p0, t0 := r.topo.probes(), time.Now()
	c0, s0, f0 := d.cpuSplit()
	w0, err := r.writes.read()
	if err != nil {
		return err
	}
	var prof *profiler
	if r.profile {
		prof = startProfile(d, r.t.Steady, filepath.Join(r.dir, "perf.data"))
	}
	if err := sleep(ctx, r.t.Steady); err != nil {
		return err
	}
	if prof != nil {
		r.save(fmt.Sprintf("%s-%s-%d.perf.txt", fileName(r.s.Name()), d.kind, res.Rep+1), prof.report())
	}
	p1, t1 := r.topo.probes(), time.Now()
	c1, s1, f1 := d.cpuSplit()
	w1, err := r.writes.read()
	if err != nil {
		return err
	}
	res.SteadySeconds = t1.Sub(t0).Seconds()
	res.Probes = p1 - p0
	res.ProbeRate = float64(res.Probes) / res.SteadySeconds
	res.CPUSeconds = (c1 - c0).Seconds()
	res.SteadyWrites = w1.Sub(w0)
	res.RSS, res.RSSLargest, res.RSSAnon = d.rss()
	r.save(fmt.Sprintf("%s-%s-%d.memory.txt", fileName(r.s.Name()), d.kind, res.Rep+1), memoryBreakdown(d.pids()))
	r.save(fmt.Sprintf("%s-%s-%d.cpu.txt", fileName(r.s.Name()), d.kind, res.Rep+1), cpuBreakdown(c1-c0, s1-s0, f1-f0, res.Probes))
	if !d.alive() {
		return fmt.Errorf("%s exited", d.kind)
	}
	return nil
}

// detect stops real server 0, waits for weight 0 in every service, starts it
// again and waits for its weight back, counting other changes.
func (r *runner) detect(ctx context.Context, d *daemon, _ string, res *Run) error {
	down := r.base()
	down[0] = 0
	n := int64(r.s.Services)
	w0, err := r.writes.read()
	if err != nil {
		return err
	}
	t0 := time.Now()
	d.mark(d.cmd.Stdout, "stopping real server 0", t0)
	if err := r.topo.setUp(ctx, 0, false); err != nil {
		return err
	}
	seen := func(t table) { res.DetectWrong = max(res.DetectWrong, t.wrong(down, 0)) }
	at, err := r.view.waitFor(ctx, r.t.Limit, func(t table) bool { return t.matches(down) }, seen)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			res.DetectTimedOut = r.t.Limit.Seconds()
		}
		_ = r.topo.setUp(ctx, 0, true)
		return fmt.Errorf("real server 0 not at weight 0 everywhere: %w", err)
	}
	res.Detect = at.Sub(t0).Seconds()
	d.mark(d.cmd.Stdout, "saw real server 0 at weight 0 everywhere", at)
	w1, err := r.writes.read()
	if err != nil {
		return err
	}
	res.DetectWrites = w1.Sub(w0)
	res.DetectOther = max(res.DetectWrites.Commands-n, 0)
	t1 := time.Now()
	d.mark(d.cmd.Stdout, "starting real server 0 again", t1)
	if err := r.topo.setUp(ctx, 0, true); err != nil {
		return err
	}
	up := r.base()
	at, err = r.view.waitFor(ctx, r.t.Limit, func(t table) bool { return t.matches(up) }, nil)
	if err != nil {
		return fmt.Errorf("real server 0 not back everywhere: %w", err)
	}
	res.Recover = at.Sub(t1).Seconds()
	d.mark(d.cmd.Stdout, "saw real server 0 back everywhere", at)
	w2, err := r.writes.read()
	res.RecoverWrites = w2.Sub(w1)
	res.RecoverOther = max(res.RecoverWrites.Commands-n, 0)
	return err
}

// reload changes real server 1's weight in every service, signals the daemon,
// waits until the kernel has it everywhere and counts the writes until
// Settle after that.
func (r *runner) reload(ctx context.Context, d *daemon, cfg string, res *Run) error {
	want := r.reloaded()
	w0, err := r.writes.read()
	if err != nil {
		return err
	}
	if err := r.writeConfig(d.kind, cfg, want); err != nil {
		return err
	}
	t0 := time.Now()
	d.mark(d.cmd.Stdout, "sent SIGHUP", t0)
	if err := d.signal(syscall.SIGHUP); err != nil {
		return err
	}
	seen := func(t table) { res.ReloadWrong = max(res.ReloadWrong, t.wrong(want, 1)) }
	at, err := r.view.waitFor(ctx, r.t.Limit, func(t table) bool { return t.matches(want) }, seen)
	if err != nil {
		return fmt.Errorf("the new weight not applied everywhere: %w", err)
	}
	d.mark(d.cmd.Stdout, "saw the new weight in IPVS everywhere", at)
	res.Reload = at.Sub(t0).Seconds()
	end := time.Now().Add(r.t.Settle)
	for time.Now().Before(end) {
		if t, err := r.view.read(ctx); err == nil {
			seen(t)
		}
		if err := sleep(ctx, 100*time.Millisecond); err != nil {
			return err
		}
	}
	w1, err := r.writes.read()
	res.ReloadWrites = w1.Sub(w0)
	res.ReloadOther = max(res.ReloadWrites.Commands-int64(r.s.Services), 0)
	return err
}

// sleep waits d or until ctx ends.
func sleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return "..." + s[len(s)-n:]
}

// save writes a file to the output folder, if there is one.
func (r *runner) save(name, text string) {
	if r.outDir == "" {
		return
	}
	_ = os.MkdirAll(r.outDir, 0o755)
	_ = os.WriteFile(filepath.Join(r.outDir, name), []byte(text), 0o644)
}

// fileName turns a scenario name into a file name part.
func fileName(s string) string {
	return strings.NewReplacer(" ", "-", "=", "").Replace(s)
}
