// Package metrics exposes the director's Prometheus metrics on a registry and
// an HTTP mux of its own (never the global ones). Event-driven figures (probe
// results and latencies, reconcile passes, reloads) are recorded through hooks
// the daemon plugs into the health scheduler, the announcer loop and its
// reload path; state (VIPs, backends, peers, IPVS counters) is read from the
// announcer's status snapshot at scrape time by a custom Collector, so a
// scrape always shows one consistent pass and costs nothing between scrapes.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/control/connlimit"
	"github.com/anycast-director/director/health"
)

// Options configure Metrics.
type Options struct {
	// Status returns the announcer's latest snapshot (Loop.Status). Required.
	Status func() *announcer.Status
	// Version, Revision and BuildDate describe the daemon's build for
	// directord_build_info (internal/buildinfo).
	Version, Revision, BuildDate string
	// Logger receives HTTP server errors.
	Logger *slog.Logger
	// Notifications returns each notification channel's delivery record
	// (nil: no notification metrics).
	Notifications func() []NotificationStats
	// NoProcessMetrics leaves out the Go runtime and process collectors
	// (tests that compare whole outputs).
	NoProcessMetrics bool
}

// Metrics owns the registry and the event-driven metrics.
type Metrics struct {
	reg *prometheus.Registry
	log *slog.Logger

	checkDuration *prometheus.HistogramVec
	checks        *prometheus.CounterVec
	passDuration  prometheus.Histogram
	passErrors    prometheus.Counter
	reloads       *prometheus.CounterVec
	reloadOK      prometheus.Gauge
	reloadTime    prometheus.Gauge
	repairs       *prometheus.CounterVec

	// probes caches the series OnProbe updates, by probeKey.
	probes sync.Map
}

// probeKey names one check type's series for one result.
type probeKey struct{ typ, result string }

// probeSeries are the probe counter and latency histogram of one probeKey.
type probeSeries struct {
	checks  prometheus.Counter
	latency prometheus.Observer
}

// New builds the registry with every collector registered.
func New(opts Options) (*Metrics, error) {
	if opts.Status == nil {
		return nil, errors.New("metrics: Options.Status is required: pass the announcer loop's Status method")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		log: opts.Logger,
		checkDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name: "directord_check_duration_seconds",
			Help: "Duration of completed health probes, by check type and result.",
			// From a loopback connect (tens of microseconds) to a slow
			// HTTP check near a typical timeout.
			Buckets: []float64{.0001, .00025, .0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"type", "result"}),
		checks: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "directord_checks_total",
			Help: "Completed health probes, by check type and result (success, failure, timeout).",
		}, []string{"type", "result"}),
		passDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "directord_reconcile_duration_seconds",
			Help:    "Duration of announcer reconcile passes (plan, withdraw, program, advertise).",
			Buckets: []float64{.0001, .0005, .001, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		passErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "directord_reconcile_errors_total",
			Help: "Reconcile passes that returned an error (see the daemon log and directorctl status).",
		}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "directord_config_reloads_total",
			Help: "Configuration reload attempts (SIGHUP, API, rollback), by result (success, failure).",
		}, []string{"result"}),
		reloadOK: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "directord_config_last_reload_successful",
			Help: "1 if the last configuration reload attempt succeeded, 0 if the file was rejected.",
		}),
		reloadTime: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "directord_config_last_reload_attempt_timestamp_seconds",
			Help: "Unix time of the last configuration reload attempt, successful or not.",
		}),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "directord_drift_repairs_total",
			Help: "Kernel state that was changed behind directord's back and restored, by kind (ipvs_service, ipvs_sysctl, ipvs_sync_daemon, vip_address).",
		}, []string{"kind"}),
	}
	m.reloadOK.Set(1) // the daemon runs, so its first load succeeded
	for _, r := range []string{"success", "failure"} {
		m.reloads.WithLabelValues(r)
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "directord_build_info",
		Help: "Build information of the running directord; the value is always 1.",
		ConstLabels: prometheus.Labels{"version": opts.Version, "revision": opts.Revision,
			"builddate": opts.BuildDate, "goversion": runtime.Version()},
	})
	build.Set(1)
	cs := []prometheus.Collector{m.checkDuration, m.checks, m.passDuration, m.passErrors,
		m.reloads, m.reloadOK, m.reloadTime, m.repairs, build, newStatusCollector(opts.Status),
		newHealthLoadCollector(opts.Status), newNotifyCollector(opts.Notifications)}
	if !opts.NoProcessMetrics {
		cs = append(cs, collectors.NewGoCollector(),
			collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	}
	for _, c := range cs {
		if err := m.reg.Register(c); err != nil {
			return nil, fmt.Errorf("metrics: register collector: %w", err)
		}
	}
	return m, nil
}

// Registry returns the registry, for tests and for gathering in-process.
func (m *Metrics) Registry() *prometheus.Registry { return m.reg }

// OnProbe records one completed health probe; plug it into
// health.Options.OnProbe. It is cheap and safe for concurrent use.
func (m *Metrics) OnProbe(t health.Target, ok bool, latency time.Duration, err error) {
	result := "success"
	switch {
	case ok:
	case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
		result = "timeout"
	default:
		result = "failure"
	}
	ps := m.probeSeries(probeKey{typ: string(t.Spec.Type), result: result})
	ps.checks.Inc()
	ps.latency.Observe(latency.Seconds())
}

// probeSeries returns k's series, resolved from the vectors at its first
// probe: WithLabelValues hashes and checks its label values under a lock,
// twice per probe, hundreds of times a second, for the same few series.
func (m *Metrics) probeSeries(k probeKey) *probeSeries {
	if ps, ok := m.probes.Load(k); ok {
		return ps.(*probeSeries)
	}
	ps := &probeSeries{checks: m.checks.WithLabelValues(k.typ, k.result),
		latency: m.checkDuration.WithLabelValues(k.typ, k.result)}
	got, _ := m.probes.LoadOrStore(k, ps)
	return got.(*probeSeries)
}

// isTimeout reports whether err is a network timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// OnPass records one reconcile pass; plug it into announcer.Options.OnPass.
func (m *Metrics) OnPass(d time.Duration, err error) {
	m.passDuration.Observe(d.Seconds())
	if err != nil {
		m.passErrors.Inc()
	}
}

// ObserveReload records a configuration reload attempt at now; the daemon
// calls it from its reload path (SIGHUP and the API's Reload alike, not for
// dry runs). The time of the last successful load comes from the status.
func (m *Metrics) ObserveReload(now time.Time, err error) {
	m.reloadTime.Set(float64(now.UnixNano()) / 1e9)
	if err != nil {
		m.reloads.WithLabelValues("failure").Inc()
		m.reloadOK.Set(0)
		return
	}
	m.reloads.WithLabelValues("success").Inc()
	m.reloadOK.Set(1)
}

// DeclareRepairKinds makes directord_drift_repairs_total show 0 for each
// kind before its first repair, so rate() and increase() see the first one.
func (m *Metrics) DeclareRepairKinds(kinds ...string) {
	for _, k := range kinds {
		m.repairs.WithLabelValues(k)
	}
}

// ObserveRepair counts one repair of kernel state changed behind the
// daemon's back; safe for concurrent use.
func (m *Metrics) ObserveRepair(kind string) { m.repairs.WithLabelValues(kind).Inc() }

// Handler serves the registry in the Prometheus exposition formats.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		Registry:            m.reg, // counts its own scrape errors
		ErrorHandling:       promhttp.ContinueOnError,
		MaxRequestsInFlight: 4,
		Timeout:             10 * time.Second,
	})
}

// Mux returns a mux of our own with /metrics and a short index at /.
func (m *Metrics) Mux() *http.ServeMux {
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", m.Handler())
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprint(w, `<html><body><h1>directord</h1><p><a href="/metrics">metrics</a></p></body></html>`)
	})
	return mux
}

// Serve listens on addr (metrics.listen) and serves Mux until ctx ends.
// An empty addr disables the endpoint and Serve waits for ctx.
func (m *Metrics) Serve(ctx context.Context, addr string) error {
	if addr == "" {
		<-ctx.Done()
		return nil
	}
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics.listen %s: %w: pick a free address, or set it to \"\" to disable metrics", addr, err)
	}
	return m.ServeListener(ctx, lis)
}

// Timeouts of the metrics server. Anyone on the host can reach the port, so
// a connection that does not make progress is closed: a request's header
// must arrive within 5 s and the whole request within 10 s, an answer must
// be written within 30 s (a scrape of 10,000 backends takes well under a
// second), and a keep-alive connection idle for 30 s is closed (Prometheus
// reopens it at the next scrape).
const (
	metricsReadHeaderTimeout = 5 * time.Second
	metricsReadTimeout       = 10 * time.Second
	metricsWriteTimeout      = 30 * time.Second
	metricsIdleTimeout       = 30 * time.Second
	metricsMaxHeaderBytes    = 16 << 10
)

// ServeListener serves Mux on lis until ctx ends (tests pass a listener on
// port 0). At most connlimit.DefaultMax connections are open at once, so a
// flood of connections can make scrapes fail but never takes the
// descriptors that health probes and the API need.
func (m *Metrics) ServeListener(ctx context.Context, lis net.Listener) error {
	lis = connlimit.New(lis, connlimit.DefaultMax(), "metrics", m.log)
	srv := &http.Server{Handler: m.Mux(), ReadHeaderTimeout: metricsReadHeaderTimeout,
		ReadTimeout: metricsReadTimeout, WriteTimeout: metricsWriteTimeout, IdleTimeout: metricsIdleTimeout,
		MaxHeaderBytes: metricsMaxHeaderBytes, ErrorLog: slog.NewLogLogger(m.log.Handler(), slog.LevelWarn)}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(lis) }()
	m.log.Info("metrics listening", "addr", lis.Addr().String())
	select {
	case err := <-errc:
		return fmt.Errorf("metrics server: %w", err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}
