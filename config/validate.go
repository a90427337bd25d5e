package config

import (
	"fmt"
	"math"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// validator is the second loading stage: it turns raw values into typed ones,
// applies the defaults from defaults.go and reports every problem it finds.
// A value that fails to parse is replaced by its default (and flagged not ok)
// so that checks depending on it are skipped instead of piling up follow-on
// errors.
type validator struct {
	*report
	// paths holds the field paths join built, in blocks.
	paths strings.Builder
}

// pathBlock is the size of the blocks join cuts paths from.
const pathBlock = 4096

// join returns base followed by field (".rise"), cut from a block of such
// paths: validation builds a path for every field it checks, to name it in
// a message that is seldom written, and one allocation each was most of
// what validation allocated. A strings.Builder never changes the bytes it
// has handed out, so the paths stay valid when the block is replaced.
func (v *validator) join(base, field string) string {
	n := len(base) + len(field)
	if n > pathBlock/4 {
		return base + field
	}
	if v.paths.Cap()-v.paths.Len() < n {
		v.paths = strings.Builder{}
		v.paths.Grow(pathBlock)
	}
	start := v.paths.Len()
	v.paths.WriteString(base)
	v.paths.WriteString(field)
	return v.paths.String()[start:]
}

// validate builds the typed Config from rc. The result is only meaningful when
// r.errs is empty.
func validate(r *report, rc *rawConfig) *Config {
	v := &validator{report: r}
	c := &Config{}
	c.Director = v.director(rc.Director, rc.BGP != nil)
	c.API = v.api(rc.API)
	c.Metrics = v.metrics(rc.Metrics)
	c.Log = v.log(rc.Log)
	c.Kernel = v.kernel(rc.Kernel, c.Director.Announce)
	c.IPVS = v.ipvs(rc.IPVS)
	bgp := v.bgp(rc.BGP, c.Director.Announce)
	if c.Director.Announce == AnnounceBGP {
		c.BGP = bgp
	}
	c.Services = v.services(rc.Services, c.Director.Announce, c.BGP)
	if bgp != nil {
		v.peersNotSelf(bgp, c.Services)
	}
	c.Notify = v.notify(rc.Notify)
	return c
}

// Upper bounds of the director's timers. Go durations reach 292 years; these
// bounds catch a unit typo ("3h" for "3s") before it makes a director wait
// for hours, and keep sums of them (the shutdown budget) far from overflow.
const (
	// maxHoldDown: a VIP waits this long after every flap before it is
	// announced; minutes would already keep a healthy director out for long.
	maxHoldDown = 10 * time.Minute
	// maxDrainDelay: a backend stays in IPVS at weight 0 this long; a day
	// covers the longest-lived connections worth waiting for.
	maxDrainDelay = 24 * time.Hour
	// maxResyncInterval: drift (a route or service removed by hand) stays
	// unrepaired this long.
	maxResyncInterval = time.Hour
	// maxGracefulShutdown and maxLinger: a shutdown or director drain waits
	// this long; a restart that takes more than minutes is an outage of its own.
	maxGracefulShutdown = 10 * time.Minute
	maxLinger           = 10 * time.Minute
)

// Typed-value helpers. Each takes the raw pointer (nil = absent) and the field
// path, and returns the value (the default when absent or invalid) and whether
// it is valid.

func (v *validator) str(p *string, def string) string {
	if p == nil {
		return def
	}
	return *p
}

// duration parses a Go duration string; negative durations are errors.
func (v *validator) duration(p *string, path string, def time.Duration) (time.Duration, bool) {
	if p == nil {
		return def, true
	}
	d, err := time.ParseDuration(strings.TrimSpace(*p))
	if err != nil {
		e := v.errf(path, "%q is not a duration", *p)
		if _, nerr := strconv.ParseFloat(strings.TrimSpace(*p), 64); nerr == nil {
			e.hintf("add a unit: %ss or %sms", strings.TrimSpace(*p), strings.TrimSpace(*p))
		} else {
			e.hintf("use a Go duration such as 500ms, 2s or 1m30s")
		}
		return def, false
	}
	if d < 0 {
		v.errf(path, "%s is negative", *p)
		return def, false
	}
	return d, true
}

// durationAtMost is duration with an upper bound; why says what a larger
// value would do.
func (v *validator) durationAtMost(p *string, path string, def, hi time.Duration, why string) (time.Duration, bool) {
	d, ok := v.duration(p, path, def)
	if ok && d > hi {
		v.errf(path, "%s is longer than the %s allowed", *p, fmtDuration(hi)).hintf("%s", why)
		return def, false
	}
	return d, ok
}

// fmtDuration prints a bound the way an operator writes it ("10m", "24h").
func fmtDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = s[:len(s)-2]
	}
	if strings.HasSuffix(s, "h0m") {
		s = s[:len(s)-2]
	}
	return s
}

// seconds parses a duration that the protocol carries in whole seconds, within
// [lo, hi].
func (v *validator) seconds(p *string, path string, def, lo, hi time.Duration) (time.Duration, bool) {
	d, ok := v.duration(p, path, def)
	if !ok || p == nil {
		return d, ok
	}
	if d%time.Second != 0 {
		v.errf(path, "%s is not a whole number of seconds", *p).
			hintf("the protocol carries this timer in seconds")
		return def, false
	}
	if d < lo || d > hi {
		v.errf(path, "%s is out of range (%s..%s)", *p, lo, hi)
		return def, false
	}
	return d, true
}

// integer checks an integer against [lo, hi].
func (v *validator) integer(p *int64, path string, def, lo, hi int64) (int64, bool) {
	if p == nil {
		return def, true
	}
	if *p < lo || *p > hi {
		v.errf(path, "%d is out of range (%d..%d)", *p, lo, hi)
		return def, false
	}
	return *p, true
}

// enum checks a string against a list of valid spellings.
func (v *validator) enum(p *string, path, what, def string, valid []string) (string, bool) {
	if p == nil {
		return def, true
	}
	if slices.Contains(valid, *p) {
		return *p, true
	}
	e := v.errf(path, "unknown %s %q", what, *p)
	if s := closest(*p, valid); s != "" {
		e.hintf("did you mean %q? valid: %s", s, strings.Join(valid, ", "))
	} else {
		e.hintf("valid: %s", strings.Join(valid, ", "))
	}
	return def, false
}

// addr parses an IP address. Zones and IPv4-mapped IPv6 addresses are
// rejected: neither can be routed or programmed as written.
func (v *validator) addr(p *string, path string) (netip.Addr, bool) {
	if p == nil {
		return netip.Addr{}, false
	}
	s := strings.TrimSpace(*p)
	a, err := netip.ParseAddr(s)
	if err != nil {
		e := v.errf(path, "%q is not an IP address", *p)
		if pr, perr := netip.ParsePrefix(s); perr == nil {
			e.hintf("write the address without a prefix length: %s", pr.Addr())
		} else if ap, aerr := netip.ParseAddrPort(s); aerr == nil {
			e.hintf("write the address without a port: %s", ap.Addr())
		}
		return netip.Addr{}, false
	}
	if a.Zone() != "" {
		v.errf(path, "%q has a zone; zones are not supported here", *p)
		return netip.Addr{}, false
	}
	if a.Is4In6() {
		v.errf(path, "%q is an IPv4-mapped IPv6 address", *p).hintf("write it as %s", a.Unmap())
		return netip.Addr{}, false
	}
	return a, true
}

// missing reports a required field that is absent, unless the field or its
// parent already failed to decode (then it is absent because it was wrong, and
// that has been said). It returns nil when nothing was reported.
func (v *validator) missing(path, format string, args ...any) *Error {
	if v.failed(path) {
		return nil
	}
	return v.errf(path, format, args...)
}

// requiredAddr is addr for a field that must be present.
func (v *validator) requiredAddr(p *string, path, what string) (netip.Addr, bool) {
	if p == nil {
		v.missing(path, "required: the %s", what)
		return netip.Addr{}, false
	}
	return v.addr(p, path)
}

// hostPort checks a listen address of the form host:port where host is an IP
// address, "localhost" or empty (all addresses); port 0 lets the kernel pick.
func (v *validator) hostPort(s, path string) bool {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		v.errf(path, "%q is not host:port", s).hintf("for example 127.0.0.1:9469 or [::1]:9469")
		return false
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			v.errf(path, "%q: host %q is not an IP address", s, host).
				hintf("listen addresses are IP addresses, \"localhost\", or empty for all")
			return false
		}
	}
	if n, err := strconv.ParseUint(port, 10, 16); err != nil || strconv.FormatUint(n, 10) != port {
		v.errf(path, "%q: port %q is not a number in 0..65535", s, port)
		return false
	}
	return true
}

// isName reports whether s is a short identifier usable in logs, metric labels
// and router configuration.
func isName(s string) bool {
	if len(s) == 0 || len(s) > 63 {
		return false
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '-' || c == '_' || c == '.')
		if !ok {
			return false
		}
	}
	return true
}

const nameHint = "use 1 to 63 letters, digits, '-', '_' or '.', starting with a letter or digit"

func (v *validator) director(d *rawDirector, hasBGP bool) Director {
	if d == nil {
		d = &rawDirector{}
	}
	out := Director{}
	switch {
	case d.Name == nil || *d.Name == "":
		v.missing("director.name", "required: the director's name").hintf("for example name: d1")
	case !isName(*d.Name):
		v.errf("director.name", "%q is not a valid name", *d.Name).hintf(nameHint)
	default:
		out.Name = *d.Name
	}
	out.VIPInterface = v.str(d.VIPInterface, DefaultVIPInterface)
	v.ifname(out.VIPInterface, "director.vip_interface", "lo")
	out.Announce = defaultAnnounce(hasBGP)
	if a, ok := v.enum(d.Announce, "director.announce", "announce mode", "", []string{"bgp", "kernel", "none"}); ok && a != "" {
		out.Announce = map[string]Announce{"bgp": AnnounceBGP, "kernel": AnnounceKernel, "none": AnnounceNone}[a]
	}
	out.HoldDown, _ = v.durationAtMost(d.HoldDown, "director.hold_down", DefaultHoldDown, maxHoldDown,
		"a VIP waits this long after every flap before it is announced; seconds are usual")
	out.DrainDelay, _ = v.durationAtMost(d.DrainDelay, "director.drain_delay", DefaultDrainDelay, maxDrainDelay,
		"a failed backend stays in IPVS this long; use an operator drain for longer waits")
	out.ResyncInterval, _ = v.durationAtMost(d.ResyncInterval, "director.resync_interval", DefaultResyncInterval, maxResyncInterval,
		"drift such as a route removed by hand stays unrepaired this long; seconds are usual")
	if out.ResyncInterval < 100*time.Millisecond {
		v.errf("director.resync_interval", "%s is too short (at least 100ms)", out.ResyncInterval).
			hintf("the reconcile pass dumps IPVS and routes; seconds are fine")
		out.ResyncInterval = DefaultResyncInterval
	}
	n, _ := v.integer(d.MaxFailedResyncs, "director.max_failed_resyncs", DefaultMaxFailedResyncs, 1, 1000)
	out.MaxFailedResyncs = int(n)
	out.GracefulShutdown, _ = v.durationAtMost(d.GracefulShutdown, "director.graceful_shutdown", DefaultGracefulShutdown, maxGracefulShutdown,
		"every shutdown and director drain waits this long before the withdraw; routers move traffic in seconds")
	out.Linger, _ = v.durationAtMost(d.Linger, "director.linger", DefaultLinger, maxLinger,
		"every shutdown waits this long after the withdraw; seconds cover packets in flight")
	out.StateDir = v.str(d.StateDir, DefaultStateDir)
	if s := out.StateDir; !strings.HasPrefix(s, "/") || strings.ContainsRune(s, 0) {
		v.errf("director.state_dir", "%q is not an absolute path", s).hintf("for example %s", DefaultStateDir)
	}
	if b, ok := v.enum(d.VIPBinding, "director.vip_binding", "VIP binding", "auto", []string{"auto", "address", "local-route"}); ok {
		out.VIPBinding = map[string]VIPBinding{"auto": BindingAuto, "address": BindingAddress, "local-route": BindingLocalRoute}[b]
	}
	return out
}

func (v *validator) api(a *rawAPI) API {
	if a == nil {
		a = &rawAPI{}
	}
	out := API{Socket: v.str(a.Socket, DefaultAPISocket)}
	switch s := out.Socket; {
	case !strings.HasPrefix(s, "/"):
		v.errf("api.socket", "%q is not an absolute path", s).hintf("for example %s", DefaultAPISocket)
	case len(s) > 107 || strings.ContainsRune(s, 0):
		v.errf("api.socket", "%q is longer than the 107 bytes a Unix socket path may have", s)
	}
	n, _ := v.integer(a.KeepConfigs, "api.keep_configs", DefaultKeepConfigs, 1, 1000)
	out.KeepConfigs = int(n)
	if a.TCP != nil {
		t := a.TCP
		out.TCP = &TCPAPI{Listen: v.str(t.Listen, ""), Cert: v.str(t.Cert, ""), Key: v.str(t.Key, ""), ClientCA: v.str(t.ClientCA, "")}
		for _, f := range []struct{ name, val string }{
			{"listen", out.TCP.Listen}, {"cert", out.TCP.Cert}, {"key", out.TCP.Key}, {"client_ca", out.TCP.ClientCA},
		} {
			if f.val == "" {
				v.missing("api.tcp."+f.name, "required when api.tcp is set").
					hintf("the TCP listener always uses mutual TLS: set listen, cert, key and client_ca, or remove api.tcp")
			}
		}
		if out.TCP.Listen != "" {
			v.hostPort(out.TCP.Listen, "api.tcp.listen")
		}
	}
	return out
}

func (v *validator) metrics(m *rawMetrics) Metrics {
	if m == nil {
		m = &rawMetrics{}
	}
	out := Metrics{Listen: v.str(m.Listen, DefaultMetricsListen)}
	if out.Listen != "" {
		v.hostPort(out.Listen, "metrics.listen")
	}
	return out
}

func (v *validator) log(l *rawLog) Log {
	if l == nil {
		l = &rawLog{}
	}
	f, _ := v.enum(l.Format, "log.format", "log format", DefaultLogFormat, []string{"text", "json"})
	lv, _ := v.enum(l.Level, "log.level", "log level", DefaultLogLevel, []string{"debug", "info", "warn", "error"})
	return Log{Format: f, Level: lv}
}

// kernel validates the kernel section. Its protocol number also marks the VIP
// addresses the director binds (IFA_PROTO), in every announce mode; the table
// is used only with announce: kernel.
func (v *validator) kernel(k *rawKernel, announce Announce) Kernel {
	out := Kernel{Table: DefaultKernelTable, Protocol: DefaultKernelProtocol}
	if k == nil {
		return out
	}
	if k.Table != nil && announce != AnnounceKernel {
		v.warnf("kernel.table", "kernel.table is ignored: director.announce is %s", announce)
	}
	if t, ok := v.integer(k.Table, "kernel.table", DefaultKernelTable, 1, math.MaxUint32); ok {
		if t == 253 || t == 255 {
			v.errf("kernel.table", "table %d is reserved by the kernel (253 default, 255 local)", t).
				hintf("use the main table (254) or a table of your own (1..252)")
		} else {
			out.Table = int(t)
		}
	}
	if p, ok := v.integer(k.Protocol, "kernel.protocol", DefaultKernelProtocol, 0, 255); ok {
		switch {
		case p < 5:
			v.errf("kernel.protocol", "protocol %d is reserved by the kernel", p).
				hintf("use a number of our own in 5..255 (default %d) so our routes and addresses are told apart", DefaultKernelProtocol)
		case p == 11 || p >= 186 && p <= 198:
			v.errf("kernel.protocol", "protocol %d belongs to FRR, whose zebra deletes such routes when it starts", p).
				hintf("use a number of our own (default %d)", DefaultKernelProtocol)
		case p == 12:
			v.errf("kernel.protocol", "protocol 12 belongs to BIRD").
				hintf("use a number of our own (default %d)", DefaultKernelProtocol)
		default:
			out.Protocol = int(p)
		}
	}
	return out
}

func (v *validator) ipvs(x *rawIPVS) IPVS {
	out := IPVS{ManageSysctls: DefaultManageSysctls}
	if x == nil {
		return out
	}
	if x.ManageSysctls != nil {
		out.ManageSysctls = *x.ManageSysctls
	}
	if x.Sync != nil {
		out.Sync = v.sync(x.Sync)
	}
	if x.Sysctls == nil {
		return out
	}
	out.Sysctls = make(map[string]int, len(x.Sysctls))
	names := make([]string, 0, len(x.Sysctls))
	for name := range x.Sysctls {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		path := fieldPath("ipvs.sysctls", name)
		if !isSysctlName(name) {
			v.errf(path, "%q is not a sysctl name under net.ipv4.vs", name).
				hintf("names are lower-case letters, digits and '_', e.g. sloppy_tcp")
			continue
		}
		val := x.Sysctls[name]
		if val < math.MinInt32 || val > math.MaxInt32 {
			v.errf(path, "%d does not fit a 32-bit sysctl value", val)
			continue
		}
		out.Sysctls[name] = int(val)
	}
	return out
}

func isSysctlName(s string) bool {
	if s == "" || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// lineRef formats "services[0], line 12" for messages that point elsewhere.
func (v *validator) lineRef(path string) string {
	return fmt.Sprintf("%s, line %d", path, v.lineOf(path))
}

// ifname checks a network interface name (example is one for the hint).
func (v *validator) ifname(s, path, example string) bool {
	if len(s) == 0 || len(s) > 15 || s == "." || s == ".." || strings.ContainsAny(s, "/: \t\n\x00") {
		v.errf(path, "%q is not a network interface name", s).
			hintf("1 to 15 characters without '/', ':' or spaces, e.g. %s", example)
		return false
	}
	return true
}
