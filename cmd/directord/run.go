package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control"
	"github.com/anycast-director/director/control/connlimit"
	"github.com/anycast-director/director/control/metrics"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/internal/buildinfo"
	"github.com/anycast-director/director/ipvs/dataplane"
	"github.com/anycast-director/director/notify"
	"github.com/anycast-director/director/routing"
	"github.com/anycast-director/director/routing/bgp"
	"github.com/anycast-director/director/routing/kernel"
	"github.com/anycast-director/director/statedir"
)

// cmdRun is `directord run -config FILE`.
func cmdRun(args []string, stdout, stderr io.Writer) int {
	fs, path := runFlags()
	fs.SetOutput(stderr)
	if err := fs.Parse(args); err != nil {
		return exitUsage
	}
	if fs.NArg() != 0 {
		fmt.Fprintf(stderr, "directord run: unexpected argument %q (use -config FILE)\n", fs.Arg(0))
		return exitUsage
	}
	gc := applyMemorySettings(os.Getenv)
	// IPVS's one-time set-up (a modprobe) runs while the file is read.
	dataplane.Prepare()
	cfg, err := config.Load(*path)
	if err != nil {
		printConfigErrors(stderr, err)
		return exitUsage
	}
	level := new(slog.LevelVar)
	log := newLogger(stderr, cfg.Log, level)
	log.Info("memory settings", "reason", gc)
	if err := checkCapabilities(cfg); err != nil {
		log.Error("start failed", "err", err)
		return exitFail
	}
	d, err := newDaemon(*path, cfg, log, level)
	if err != nil {
		log.Error("start failed", "err", err)
		return exitFail
	}
	return d.run()
}

// runFlags defines run's flags (also read by the manual page and the shell
// completion).
func runFlags() (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	return fs, fs.String("config", "/etc/directord/directord.yaml", "configuration `file`")
}

// newLogger builds the slog logger the configuration asks for.
func newLogger(w io.Writer, c config.Log, level *slog.LevelVar) *slog.Logger {
	level.Set(parseLevel(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func parseLevel(s string) slog.Level {
	switch s {
	case "debug":
		return slog.LevelDebug
	case "warn":
		return slog.LevelWarn
	case "error":
		return slog.LevelError
	}
	return slog.LevelInfo
}

// daemon holds the wired adapters of one directord process.
type daemon struct {
	path    string
	log     *slog.Logger
	level   *slog.LevelVar
	first   *config.Config
	health  *health.Scheduler
	loop    *announcer.Loop
	routes  routing.Advertiser
	speaker *bgp.Speaker
	metrics *metrics.Metrics
	server  *control.Server
	manager *manager
	closers []func()
	// vips binds the VIPs; its address and route events wake the loop.
	vips *kernel.VIPs
	// notifier sends notifications of state changes (notify.go).
	notifier *notify.Notifier
	// state writes the state directory (state.go).
	state *statedir.Writer

	reloadMu sync.Mutex  // one reload at a time (SIGHUP and API)
	stopping atomic.Bool // a graceful shutdown began
}

// newDaemon wires the real adapters for cfg.
func newDaemon(path string, cfg *config.Config, log *slog.Logger, level *slog.LevelVar) (*daemon, error) {
	d := &daemon{path: path, log: log.With("director", cfg.Director.Name), level: level, first: cfg}
	d.manager = newManager(d.log)
	for _, w := range cfg.Warnings {
		d.log.Warn("configuration warning", "reason", w.Error())
	}
	binding, why := vipBinding(cfg.Director.VIPBinding, cfg.Director.Announce, kernel.Release())
	d.log.Info("VIP binding chosen", "binding", binding.String(), "reason", why)
	vips, err := kernel.NewVIPs(d.log, kernel.VIPOptions{Interface: cfg.Director.VIPInterface,
		Protocol: cfg.Kernel.Protocol, Binding: binding, OnRepair: func(vip netip.Addr) {
			d.repaired(repairVIP, vip.String(), "the VIP was no longer bound ("+binding.String()+" on "+cfg.Director.VIPInterface+"): bound again")
		}})
	if err != nil {
		return nil, fmt.Errorf("VIP interface %q: %w", cfg.Director.VIPInterface, err)
	}
	d.closers = append(d.closers, func() { vips.Close() })
	d.vips = vips
	restored := d.openState(cfg, binding)
	plane, closePlane := openIPVS(cfg, d.log, func(r dataplane.Repair) { d.repaired(r.Kind, r.Subject, r.Detail) })
	d.closers = append(d.closers, closePlane)
	if err := d.newRoutes(cfg); err != nil {
		d.close()
		return nil, err
	}
	var loop *announcer.Loop
	build := buildinfo.Get()
	d.metrics, err = metrics.New(metrics.Options{Status: func() *announcer.Status { return loop.Status() },
		Notifications: d.notificationStats, Version: build.Version, Revision: build.Commit, BuildDate: build.Date, Logger: d.log})
	if err != nil {
		d.close()
		return nil, fmt.Errorf("metrics: %w", err)
	}
	d.metrics.DeclareRepairKinds(repairKinds()...)
	d.health = health.NewScheduler(d.log, health.Options{OnProbe: d.metrics.OnProbe, LearnRate: health.DefaultLearnRate})
	loop = announcer.New(cfg, announcer.Deps{Health: d.health, IPVS: plane, VIPs: vips, Routes: d.routes},
		d.log, announcer.Options{OnPass: d.onPass, State: d.state, Restored: restored})
	d.loop = loop
	if err := d.newNotifier(cfg); err != nil {
		d.close()
		return nil, err
	}
	d.server = control.NewServer(control.ServerOptions{Director: loop, Reload: d.reload, Rollback: d.rollback,
		RouterConfig: d.routerConfig, Logger: d.log, API: cfg.API})
	return d, nil
}

// onPass records a finished reconcile pass for the metrics and the service
// manager.
func (d *daemon) onPass(took time.Duration, err error) {
	d.metrics.OnPass(took, err)
	d.manager.passDone()
}

// newRoutes builds the advertiser the announce mode asks for.
func (d *daemon) newRoutes(cfg *config.Config) error {
	switch cfg.Director.Announce {
	case config.AnnounceBGP:
		s, err := bgp.New(cfg.BGP, d.log, bgp.Options{OnPeerEvent: func(ev routing.PeerEvent) {
			if d.loop != nil {
				d.loop.PeerChanged(ev)
			}
		}})
		if err != nil {
			return fmt.Errorf("bgp: %w", err)
		}
		if err := s.SetAllowed(vipPrefixes(cfg)); err != nil {
			return fmt.Errorf("bgp: %w", err)
		}
		d.speaker, d.routes = s, bgpRoutes{s}
	case config.AnnounceKernel:
		a, err := kernel.NewAdvertiser(d.log, kernel.AdvertiserOptions{Table: cfg.Kernel.Table,
			Protocol: cfg.Kernel.Protocol, Interface: cfg.Director.VIPInterface})
		if err != nil {
			return fmt.Errorf("kernel advertiser: %w", err)
		}
		d.closers = append(d.closers, func() { a.Close() })
		d.routes = a
	default:
		d.routes = newNoRoutes()
	}
	return nil
}

func (d *daemon) close() {
	for i := len(d.closers) - 1; i >= 0; i-- {
		d.closers[i]()
	}
}

// run starts everything and handles signals until the daemon exits.
func (d *daemon) run() int {
	defer d.close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	start := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	if d.speaker != nil {
		if err := d.speaker.Start(ctx); err != nil {
			d.log.Error("start failed", "err", fmt.Errorf("bgp: %w", err))
			return exitFail
		}
	}
	start("health", d.health.Run)
	start("announcer", d.loop.Run)
	start("vip-events", func(ctx context.Context) error { return d.vips.Watch(ctx, d.loop.Poke) })
	start("notify", d.runNotifier)
	start("api", d.server.Serve)
	reloads := make(chan struct{}, 1)
	start("reload", func(ctx context.Context) error { d.reloadOnSignal(ctx, reloads); return nil })
	start("metrics", func(ctx context.Context) error { return d.metrics.Serve(ctx, d.first.Metrics.Listen) })
	select {
	case <-d.server.Ready():
	case err := <-errc:
		d.log.Error("start failed", "err", err)
		return exitFail
	}
	d.log.Info("directord running", "reason", fmt.Sprintf("version %s, config %s (%s), announce %s",
		buildinfo.Get().Version, d.path, d.first.Digest, d.first.Director.Announce))
	d.logFileBudget()
	go d.manager.readyAfterFirstPass(ctx, d.loop.Status)
	go d.manager.feedWatchdog(ctx, d.loop.Wedged)

	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sigs)
	for {
		select {
		case err := <-errc:
			d.log.Error("component failed; shutting down", "err", err)
			code := d.shutdown(sigs)
			cancel()
			wg.Wait()
			return max(code, exitFail)
		case sig := <-sigs:
			if sig == syscall.SIGHUP {
				// Reloads run on their own goroutine, so this loop keeps
				// answering SIGTERM whatever the file does; SIGHUPs that
				// arrive during a reload make one more.
				select {
				case reloads <- struct{}{}:
				default:
				}
				continue
			}
			d.log.Info("signal received; shutting down gracefully", "reason", sig.String())
			code := d.shutdown(sigs)
			cancel()
			wg.Wait()
			d.log.Info("directord stopped")
			return code
		}
	}
}

// logFileBudget says how the open-files limit is shared (docs/api.md, "What
// a client can cost the daemon"). Go raised the soft limit to the hard one
// when the process started.
func (d *daemon) logFileBudget() {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		d.log.Warn("open-files limit unknown", "err", err)
		return
	}
	d.log.Info("open files budgeted", "reason", fmt.Sprintf("open-files limit %d (hard %d): health probes keep to half, "+
		"metrics and api.tcp hold at most %d connections each", rl.Cur, rl.Max, connlimit.DefaultMax()))
}

// reloadOnSignal runs the reloads SIGHUP asks for, one at a time, until ctx
// ends. Reading the file is bounded (config.LoadContext), and ctx ends the
// reload when the daemon stops.
func (d *daemon) reloadOnSignal(ctx context.Context, reloads <-chan struct{}) {
	for {
		select {
		case <-ctx.Done():
			return
		case <-reloads:
			d.manager.reloading()
			_, v, err := d.reloadFile(announcer.WithReason(ctx, "SIGHUP"), false, false)
			if err != nil {
				d.log.Error("reload rejected; the running configuration stays", "err", err)
			}
			// Once a shutdown began, systemd hears STOPPING, not READY.
			if !d.stopping.Load() {
				d.manager.reloaded(d.loop.Status(), v, err)
			}
		}
	}
}

// shutdown withdraws every VIP gracefully, lingers, then ends the BGP sessions
// with a Cease. A second SIGTERM or SIGINT cuts it short. With BGP Graceful
// Restart it stops for a restart instead (restartStop).
func (d *daemon) shutdown(sigs <-chan os.Signal) int {
	d.stopping.Store(true)
	if d.restartStop() {
		return exitOK
	}
	budget := announcer.ShutdownBudget(d.current().Director, d.loop.SlowestPass())
	d.manager.stopping(budget)
	ctx, cancel := context.WithTimeout(context.Background(), budget)
	defer cancel()
	go func() {
		for sig := range sigs {
			if sig != syscall.SIGHUP {
				d.log.Warn("second signal: skipping the rest of the graceful shutdown", "reason", sig.String())
				cancel()
				return
			}
		}
	}()
	code := exitOK
	if err := d.loop.Shutdown(ctx); err != nil {
		d.log.Error("graceful shutdown incomplete", "err", err)
		code = exitFail
	}
	if d.speaker != nil {
		stopCtx, stop := context.WithTimeout(context.Background(), 3*time.Second)
		defer stop()
		if err := d.speaker.Stop(stopCtx); err != nil {
			d.log.Warn("bgp stop", "err", err)
		}
	}
	return code
}

// current returns the running configuration.
func (d *daemon) current() *config.Config {
	if c := d.loop.Running(); c != nil {
		return c
	}
	return d.first
}
