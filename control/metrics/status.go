package metrics

import (
	"net/netip"
	"slices"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/health"
	"github.com/anycast-director/director/ipvs"
)

// statusCollector reads the announcer's status snapshot at scrape time and
// turns it into const metrics. IPVS and peer counters are counters that the
// kernel and the routing adapter keep; a recreated service or session
// restarts them, which Prometheus' rate() treats as a reset.
type statusCollector struct {
	status func() *announcer.Status

	vipAdvertised, vipGraceful, vipDisabled                *prometheus.Desc
	svcBackends, svcHealthy, svcMinHealthy, svcProgrammed  *prometheus.Desc
	backendHealth, backendConfigured, backendEffective     *prometheus.Desc
	backendDraining, backendLatency                        *prometheus.Desc
	peerState, peerUp, peerFlaps, peerBFDUp, peerPrefixes  *prometheus.Desc
	svcConns, svcPackets, svcBytes                         *prometheus.Desc
	dstConns, dstPackets, dstBytes, dstActive, dstInactive *prometheus.Desc
	learning, drained, shuttingDown, withdrawn             *prometheus.Desc
	overrides, configInfo, configVersion, configLoaded     *prometheus.Desc
	lastPass, fingerprint                                  *prometheus.Desc
	syncOK, syncRunning                                    *prometheus.Desc
	stateLost, stateSaveFailures, stateSaved               *prometheus.Desc
}

func newStatusCollector(status func() *announcer.Status) *statusCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, labels, nil)
	}
	return &statusCollector{
		status:        status,
		vipAdvertised: d("directord_vip_advertised", "1 while the VIP is announced to the routers (including a graceful withdraw), else 0.", "vip"),
		vipGraceful:   d("directord_vip_graceful_shutdown", "1 while the VIP is announced with GRACEFUL_SHUTDOWN before a withdraw.", "vip"),
		vipDisabled:   d("directord_vip_disabled", "1 while an operator has disabled the VIP (directorctl vip disable).", "vip"),

		svcBackends:   d("directord_service_backends", "Configured backends of the service.", "service"),
		svcHealthy:    d("directord_service_healthy_backends", "Backends of the service that are healthy and have a non-zero weight.", "service"),
		svcMinHealthy: d("directord_service_min_healthy_backends", "Healthy backends the service needs for its VIP to be announced (min_healthy).", "service"),
		svcProgrammed: d("directord_service_programmed", "1 if IPVS accepted the service (always 1 for local services), 0 if programming failed.", "service"),

		backendHealth:     d("directord_backend_health_state", "Dampened health verdict of the backend: 1 for the current state (up, down, unknown), 0 for the others.", "service", "backend", "state"),
		backendConfigured: d("directord_backend_configured_weight", "Weight of the backend in the configuration.", "service", "backend"),
		backendEffective:  d("directord_backend_effective_weight", "Weight of the backend as programmed (0 when unhealthy, drained or learning).", "service", "backend"),
		backendDraining:   d("directord_backend_draining", "1 while the backend is held at weight 0 so its connections finish.", "service", "backend"),
		backendLatency:    d("directord_backend_check_latency_seconds", "Duration of the backend's last completed health probe.", "service", "backend"),

		peerState:    d("directord_peer_state", "BGP session state: 1 for the current state, 0 for the others.", "peer", "state"),
		peerUp:       d("directord_peer_up", "1 while the routing session is established.", "peer"),
		peerFlaps:    d("directord_peer_flaps_total", "Transitions of the routing session out of established.", "peer"),
		peerBFDUp:    d("directord_peer_bfd_up", "1 while the session's BFD state is up (only for sessions with BFD).", "peer"),
		peerPrefixes: d("directord_peer_advertised_prefixes", "Prefixes currently advertised to the peer.", "peer"),

		svcConns:    d("directord_ipvs_service_connections_total", "Connections scheduled by the IPVS virtual service.", "service"),
		svcPackets:  d("directord_ipvs_service_packets_total", "Packets through the IPVS virtual service, by direction (in, out).", "service", "direction"),
		svcBytes:    d("directord_ipvs_service_bytes_total", "Bytes through the IPVS virtual service, by direction (in, out).", "service", "direction"),
		dstConns:    d("directord_ipvs_destination_connections_total", "Connections scheduled to the IPVS destination.", "service", "backend"),
		dstPackets:  d("directord_ipvs_destination_packets_total", "Packets through the IPVS destination, by direction (in, out).", "service", "backend", "direction"),
		dstBytes:    d("directord_ipvs_destination_bytes_total", "Bytes through the IPVS destination, by direction (in, out).", "service", "backend", "direction"),
		dstActive:   d("directord_ipvs_destination_active_connections", "Active (established) connections of the IPVS destination.", "service", "backend"),
		dstInactive: d("directord_ipvs_destination_inactive_connections", "Inactive connections of the IPVS destination.", "service", "backend"),

		learning:          d("directord_learning", "1 during the start-up learn period, when nothing is announced yet."),
		drained:           d("directord_drained", "1 while an operator has drained the whole director."),
		shuttingDown:      d("directord_shutting_down", "1 once a graceful shutdown began."),
		withdrawn:         d("directord_withdrawn_for_failures", "1 while every VIP is withdrawn because reconcile passes kept failing."),
		overrides:         d("directord_overrides", "Active operator overrides, by kind.", "kind"),
		configInfo:        d("directord_config_info", "The running configuration's version and digest; the value is always 1.", "version", "digest"),
		configVersion:     d("directord_config_version", "Version number of the running configuration (numbers the configurations loaded, across restarts with the state directory)."),
		configLoaded:      d("directord_config_last_reload_success_timestamp_seconds", "Unix time the running configuration was loaded."),
		lastPass:          d("directord_reconcile_last_pass_timestamp_seconds", "Unix time the last reconcile pass ended."),
		stateLost:         d("directord_state_lost", "1 when the daemon started without its saved state: the state file in director.state_dir was corrupt, truncated, unreadable or from a newer directord and was set aside, so operator overrides and the configuration history were lost. Stays 1 until the next start."),
		stateSaveFailures: d("directord_state_save_failures_total", "Failed writes of the state directory since start: overrides and history set since then would not survive a restart."),
		stateSaved:        d("directord_state_last_save_timestamp_seconds", "Unix time the state directory was last written."),
		syncOK:            d("directord_ipvs_sync_ok", "With ipvs.sync configured: 1 while the master and backup sync daemons run as configured, 0 when they do not (see directorctl status)."),
		syncRunning:       d("directord_ipvs_sync_daemon_running", "1 while the kernel runs the IPVS sync daemon of this state (master, backup), configured here or not.", "state"),
		fingerprint: d("directord_service_fingerprint_info", "The IPVS service's fingerprint (scheduler, flags, destination order and weights); directors whose fingerprints differ pick different real servers for a flow. The value is always 1.",
			"service", "fingerprint"),
	}
}

// Describe sends every descriptor.
func (c *statusCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		c.vipAdvertised, c.vipGraceful, c.vipDisabled, c.svcBackends, c.svcHealthy, c.svcMinHealthy, c.svcProgrammed,
		c.backendHealth, c.backendConfigured, c.backendEffective, c.backendDraining, c.backendLatency,
		c.peerState, c.peerUp, c.peerFlaps, c.peerBFDUp, c.peerPrefixes,
		c.svcConns, c.svcPackets, c.svcBytes, c.dstConns, c.dstPackets, c.dstBytes, c.dstActive, c.dstInactive,
		c.learning, c.drained, c.shuttingDown, c.withdrawn, c.overrides, c.configInfo, c.configVersion,
		c.configLoaded, c.lastPass, c.fingerprint, c.syncOK, c.syncRunning, c.stateLost, c.stateSaveFailures, c.stateSaved,
	} {
		ch <- d
	}
}

// emitter sends const metrics, turning a construction error (a programming
// mistake such as a wrong label count) into an invalid metric that the
// scrape reports instead of a panic.
type emitter struct{ ch chan<- prometheus.Metric }

func (e emitter) gauge(d *prometheus.Desc, v float64, labels ...string) {
	e.send(d, prometheus.GaugeValue, v, labels)
}

func (e emitter) counter(d *prometheus.Desc, v uint64, labels ...string) {
	e.send(d, prometheus.CounterValue, float64(v), labels)
}

func (e emitter) send(d *prometheus.Desc, t prometheus.ValueType, v float64, labels []string) {
	m, err := prometheus.NewConstMetric(d, t, v, labels...)
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	e.ch <- m
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Collect reads one snapshot and emits it.
func (c *statusCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.status()
	if st == nil {
		return
	}
	e := emitter{ch}
	e.gauge(c.learning, b2f(st.Learning))
	e.gauge(c.drained, b2f(st.Drained != nil))
	e.gauge(c.shuttingDown, b2f(st.ShuttingDown))
	e.gauge(c.withdrawn, b2f(st.WithdrawnForFailures))
	e.gauge(c.configInfo, 1, strconv.Itoa(st.Config.Version), st.Config.Digest)
	e.gauge(c.configVersion, float64(st.Config.Version))
	if !st.Config.Loaded.IsZero() {
		e.gauge(c.configLoaded, float64(st.Config.Loaded.UnixNano())/1e9)
	}
	if !st.LastPass.IsZero() {
		e.gauge(c.lastPass, float64(st.LastPass.UnixNano())/1e9)
	}
	if r := st.State; r != nil {
		e.gauge(c.stateLost, b2f(r.Lost))
		e.counter(c.stateSaveFailures, r.SaveFailures)
		if !r.Saved.IsZero() {
			e.gauge(c.stateSaved, float64(r.Saved.UnixNano())/1e9)
		}
	}
	o := st.Overrides
	e.gauge(c.overrides, float64(len(o.Drained)), "drain_backend")
	e.gauge(c.overrides, float64(len(o.Weights)), "weight")
	e.gauge(c.overrides, float64(len(o.DisabledVIPs)), "disable_vip")
	e.gauge(c.overrides, b2f(o.Director != nil), "drain_director")

	for _, v := range st.VIPs {
		vip := v.VIP.String()
		e.gauge(c.vipAdvertised, b2f(v.Advertised), vip)
		e.gauge(c.vipGraceful, b2f(v.Advertised && v.Graceful), vip)
		_, disabled := o.DisabledVIPs[v.VIP]
		e.gauge(c.vipDisabled, b2f(disabled), vip)
	}
	for i := range st.Services {
		c.collectService(e, &st.Services[i])
	}
	c.collectSync(e, st.Sync)
	for _, p := range st.Peers {
		peer := p.Address.String()
		for _, s := range []string{"idle", "connect", "active", "opensent", "openconfirm", "established"} {
			e.gauge(c.peerState, b2f(p.State == s), peer, s)
		}
		e.gauge(c.peerUp, b2f(p.State == "established"), peer)
		e.counter(c.peerFlaps, p.Flaps, peer)
		if p.BFDState != "" {
			e.gauge(c.peerBFDUp, b2f(p.BFDState == "up"), peer)
		}
		e.gauge(c.peerPrefixes, float64(p.Advertised), peer)
	}
}

func (c *statusCollector) collectService(e emitter, s *announcer.ServiceStatus) {
	e.gauge(c.svcBackends, float64(s.Total), s.Name)
	e.gauge(c.svcHealthy, float64(s.Healthy), s.Name)
	e.gauge(c.svcMinHealthy, float64(s.MinHealthy), s.Name)
	e.gauge(c.svcProgrammed, b2f(s.Programmed), s.Name)
	ipvsService := s.Forwarding != "local"
	if ipvsService {
		emitStats(e, c.svcConns, c.svcPackets, c.svcBytes, s.Counters, s.Name)
		if s.Fingerprint != "" {
			e.gauge(c.fingerprint, 1, s.Name, s.Fingerprint)
		}
	}
	for i := range s.Backends {
		b := &s.Backends[i]
		be := netip.AddrPortFrom(b.Address, b.Port).String()
		for _, hs := range []health.State{health.Unknown, health.Down, health.Up} {
			e.gauge(c.backendHealth, b2f(b.Health.State == hs), s.Name, be, hs.String())
		}
		e.gauge(c.backendConfigured, float64(b.Configured), s.Name, be)
		e.gauge(c.backendEffective, float64(b.Effective), s.Name, be)
		e.gauge(c.backendDraining, b2f(b.Draining), s.Name, be)
		if b.Health.Probes > 0 {
			e.gauge(c.backendLatency, b.Health.Latency.Seconds(), s.Name, be)
		}
		if ipvsService && !b.Deleted && !b.Held {
			emitStats(e, c.dstConns, c.dstPackets, c.dstBytes, b.Counters, s.Name, be)
			e.gauge(c.dstActive, float64(b.Counters.ActiveConns), s.Name, be)
			e.gauge(c.dstInactive, float64(b.Counters.InactiveConns), s.Name, be)
		}
	}
}

// collectSync reports the connection synchronization.
func (c *statusCollector) collectSync(e emitter, y ipvs.SyncStatus) {
	if y.Configured {
		e.gauge(c.syncOK, b2f(y.Error == "" && len(y.Daemons) == 2))
	}
	if !y.Configured && len(y.Daemons) == 0 {
		return
	}
	for _, s := range []ipvs.SyncState{ipvs.SyncMaster, ipvs.SyncBackup} {
		_, on := y.Running(s)
		e.gauge(c.syncRunning, b2f(on), s.String())
	}
}

// emitStats sends the connection, packet and byte counters of one IPVS entry.
func emitStats(e emitter, conns, packets, bytes *prometheus.Desc, st ipvs.Stats, labels ...string) {
	e.counter(conns, st.Connections, labels...)
	in, out := slices.Concat(labels, []string{"in"}), slices.Concat(labels, []string{"out"})
	e.counter(packets, st.PacketsIn, in...)
	e.counter(packets, st.PacketsOut, out...)
	e.counter(bytes, st.BytesIn, in...)
	e.counter(bytes, st.BytesOut, out...)
}
