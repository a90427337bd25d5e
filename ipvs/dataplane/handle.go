package dataplane

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"slices"
	"sync"
	"time"

	moby "github.com/moby/ipvs"

	"github.com/anycast-director/director/internal/progress"
	"github.com/anycast-director/director/ipvs"
)

// ErrNotAvailable means the kernel has no IPVS. The daemon marks its IPVS
// services failed and keeps serving the services that need no IPVS.
var ErrNotAvailable = errors.New("IPVS is not available in this kernel")

// modulesHint names what to load, for the ErrNotAvailable message.
const modulesHint = "modprobe ip_vs ip_vs_mh ip_vs_wlc ip_vs_rr ip_vs_sh"

// DefaultResyncInterval is how long Apply trusts its record of what it wrote
// before it reads the whole owned state back from the kernel. In between,
// Apply reads back only the services whose desired state changed (and those
// with draining destinations), which keeps a single weight change fast with
// tens of thousands of services; drift made behind its back is repaired at
// the next full read.
const DefaultResyncInterval = 10 * time.Second

// Handle programs IPVS in one network namespace. Its methods are safe for
// concurrent use; they are serialized because moby/ipvs shares one netlink
// socket per handle.
type Handle struct {
	mu     sync.Mutex
	k      kernel
	log    *slog.Logger
	nsPath string
	cfg    config

	// entries are the owned services: keys of the last desired state plus
	// keys applied before whose deletion has not succeeded yet.
	entries  map[ipvs.Key]*entry
	order    []*entry // entries in the order of the last desired state
	epoch    uint64   // counts Apply calls, to mark the keys of one
	fps      fpTable  // fingerprints, copied shard by shard once published
	needFull bool
	lastFull time.Time
	proc     *os.File // /proc/net/ip_vs of the namespace, or nil

	// kept are the sysctls Settings set or found as wanted, by name: a later
	// difference is drift.
	kept map[string]string
	// sync is the sync daemons' netlink socket (opened on first use).
	sync syncKernel
	// syncOwned says Settings started or adopted the sync daemons; syncKept
	// are their settings as the kernel reports them.
	syncOwned bool
	syncKept  map[ipvs.SyncState]ipvs.SyncDaemon
}

// config holds what Options change.
type config struct {
	resync    time.Duration
	now       func() time.Time
	procIPVS  string // exists when the ip_vs module is loaded
	sysctlDir string
	newKernel func(nsPath string) (kernel, error)
	procDests bool // full reads take destinations from /proc/net/ip_vs
	newSync   func(nsPath string) (syncKernel, error)
	onRepair  func(Repair)
}

// Option changes how Open builds a Handle.
type Option func(*config)

// WithResyncInterval sets how often Apply reads the whole owned state back
// from the kernel (DefaultResyncInterval by default; 0 reads it on every
// Apply, which makes every Apply cost one read per owned service).
func WithResyncInterval(d time.Duration) Option {
	return func(c *config) { c.resync = d }
}

func defaultConfig() config {
	return config{
		resync:    DefaultResyncInterval,
		now:       time.Now,
		procIPVS:  "/proc/net/ip_vs",
		sysctlDir: "/proc/sys/net/ipv4/vs",
		newKernel: openKernel,
		procDests: true,
		newSync:   openSync,
	}
}

// Open returns a handle that programs IPVS in the network namespace at nsPath
// (a file such as /run/netns/NAME; "" is the caller's namespace). It fails
// with ErrNotAvailable when the kernel has no IPVS.
func Open(nsPath string, logger *slog.Logger, opts ...Option) (*Handle, error) {
	cfg := defaultConfig()
	for _, o := range opts {
		o(&cfg)
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	// Check before moby/ipvs resolves the IPVS netlink family: it does so once
	// per process, and a process that asked before the module was loaded
	// would send every later request to family 0, which the kernel
	// acknowledges without doing anything.
	if _, err := os.Stat(cfg.procIPVS); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %s does not exist (load it with: %s)", ErrNotAvailable, cfg.procIPVS, modulesHint)
		}
		return nil, fmt.Errorf("check for IPVS at %s: %w", cfg.procIPVS, err)
	}
	if nsPath != "" {
		if _, err := os.Stat(nsPath); err != nil {
			return nil, fmt.Errorf("open IPVS handle: network namespace %s: %w", nsPath, err)
		}
	}
	k, err := cfg.newKernel(nsPath)
	if err != nil {
		return nil, fmt.Errorf("open IPVS netlink socket in namespace %q: %w", nsPath, err)
	}
	h := newHandle(k, nsPath, logger, cfg)
	if _, err := k.GetServices(); err != nil {
		k.Close()
		return nil, fmt.Errorf("%w: listing services failed: %v (load it with: %s)", ErrNotAvailable, err, modulesHint)
	}
	if cfg.procDests {
		if h.proc, err = openProcIPVS(nsPath); err != nil {
			logger.Warn("cannot open /proc/net/ip_vs; full reads will take one netlink request per service", "err", err)
		}
	}
	return h, nil
}

// newHandle wraps a kernel; unit tests call it with a fake.
func newHandle(k kernel, nsPath string, logger *slog.Logger, cfg config) *Handle {
	return &Handle{
		k:        k,
		log:      logger,
		nsPath:   nsPath,
		cfg:      cfg,
		entries:  make(map[ipvs.Key]*entry),
		needFull: true,
		kept:     make(map[string]string),
		syncKept: make(map[ipvs.SyncState]ipvs.SyncDaemon),
	}
}

// Close releases the netlink socket. IPVS state stays in the kernel: a
// restarted daemon adopts it.
func (h *Handle) Close() error {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.k != nil {
		h.k.Close()
		h.k = nil
	}
	h.closeSync()
	if h.proc != nil {
		err := h.proc.Close()
		h.proc = nil
		return err
	}
	return nil
}

// Resync makes the next Apply read the whole owned state from the kernel, for
// example after an operator changed IPVS by hand.
func (h *Handle) Resync() {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.needFull = true
}

// Plan reads the kernel and returns the writes Apply would issue for want,
// without issuing them (a dry run). It reads the owned services and those in
// want, like Apply's full read.
func (h *Handle) Plan(ctx context.Context, want []ipvs.Service) ([]ipvs.Op, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usable(ctx); err != nil {
		return nil, err
	}
	keys := make(map[ipvs.Key]bool, len(want))
	for _, w := range want {
		keys[w.Key] = true
	}
	have, _, failed, err := h.read(ctx, func(k ipvs.Key) bool { return keys[k] || h.entries[k] != nil })
	if err != nil {
		return nil, err
	}
	var errs []error
	for _, e := range failed {
		errs = append(errs, e)
	}
	return ipvs.Diff(want, have, h.cfg.now()), errors.Join(errs...)
}

// Stats reads the counters of the owned services (those of the last Apply)
// from the kernel, one netlink request per service. Connection counts are
// current; the packet, byte and connection totals are folded in by the
// kernel's estimator every 2 s, and moby/ipvs decodes the 32-bit totals, so
// connection and packet totals wrap at 2^32. The handle is locked for one
// request at a time, not for the whole read: at thousands of services the
// read is long, and an Apply waiting behind it would delay the programming
// that health changes ask for.
func (h *Handle) Stats(ctx context.Context) (map[ipvs.Key]ipvs.ServiceStats, error) {
	h.mu.Lock()
	if err := h.usable(ctx); err != nil {
		h.mu.Unlock()
		return nil, err
	}
	ks, err := h.k.GetServices()
	owned := make([]*moby.Service, 0, len(h.entries))
	for _, s := range ks {
		if svc, ok := serviceFromKernel(s); ok && h.entries[svc.Key] != nil {
			owned = append(owned, s)
		}
	}
	h.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("read IPVS services for stats: %w", err)
	}
	out := make(map[ipvs.Key]ipvs.ServiceStats, len(owned))
	var errs []error
	for _, s := range owned {
		svc, _ := serviceFromKernel(s)
		h.mu.Lock()
		uerr := h.usable(ctx) // closed meanwhile, or cancelled
		var kds []*moby.Destination
		if uerr == nil {
			kds, err = h.k.GetDestinations(s)
		}
		h.mu.Unlock()
		if uerr != nil {
			return out, uerr
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("read destinations of %s for stats: %w", svc.Key, err))
			continue
		}
		st := ipvs.ServiceStats{Stats: statsFromKernel(s.Stats)}
		for _, kd := range kds {
			d, ok := destFromKernel(kd)
			if !ok {
				continue
			}
			ds := destStatsFromKernel(kd)
			st.Stats.ActiveConns += ds.ActiveConns
			st.Stats.InactiveConns += ds.InactiveConns
			st.Destinations = append(st.Destinations, ipvs.DestinationStats{Address: d.AddrPort(), Weight: d.Weight, Stats: ds})
		}
		out[svc.Key] = st
	}
	return out, errors.Join(errs...)
}

// usable reports a closed handle or a cancelled context.
func (h *Handle) usable(ctx context.Context) error {
	if h.k == nil {
		return errors.New("IPVS handle is closed")
	}
	return ctx.Err()
}

// Own takes ownership of keys: services a previous process created (the
// daemon's state directory lists them). The next Apply reads them from the
// kernel and, like services it programmed itself, deletes those its
// desired state does not list. A key not in the kernel is simply
// forgotten. Services of other keys stay untouched, as always.
func (h *Handle) Own(keys []ipvs.Key) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, k := range keys {
		if h.entries[k] == nil {
			h.entries[k] = &entry{key: k}
			h.needFull = true
		}
	}
}

// Current returns the kernel's state of those of keys that it has, without
// taking ownership or writing anything. A restarting daemon reads it before
// its first Apply so it can keep the weights it finds until health checks
// have a verdict, instead of zeroing a working service for a moment.
func (h *Handle) Current(ctx context.Context, keys []ipvs.Key) ([]ipvs.Service, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if err := h.usable(ctx); err != nil {
		return nil, err
	}
	want := make(map[ipvs.Key]bool, len(keys))
	for _, k := range keys {
		want[k] = true
	}
	have, _, failed, err := h.read(ctx, func(k ipvs.Key) bool { return want[k] })
	if err != nil {
		return nil, err
	}
	var errs []error
	for k, e := range failed {
		errs = append(errs, fmt.Errorf("%s: %w", k, e))
	}
	return have, errors.Join(errs...)
}

// read returns the kernel's view of the owned services, destinations in
// kernel order, and the number of read requests it took. Service attributes
// come from the netlink service dump; destinations from one read of
// /proc/net/ip_vs when the handle has it open, else one netlink dump per
// service. failed holds per-service read errors (those services must not be
// written this round). The error is set only when the service list itself
// cannot be read.
func (h *Handle) read(ctx context.Context, owned func(ipvs.Key) bool) (have []ipvs.Service, reads int, failed map[ipvs.Key]error, err error) {
	ks, err := h.k.GetServices()
	reads++
	if err != nil {
		return nil, reads, nil, fmt.Errorf("read IPVS services: %w", err)
	}
	progress.Report(ctx)
	failed = make(map[ipvs.Key]error)
	var procDests map[ipvs.Key][]ipvs.Destination
	if h.proc != nil {
		reads++
		if procDests, err = readProcDests(h.proc, owned); err != nil {
			h.log.Warn("reading /proc/net/ip_vs failed, reading destinations per service instead", "err", err)
			procDests = nil
		}
		progress.Report(ctx)
	}
	missing := 0
	for _, s := range ks {
		svc, ok := serviceFromKernel(s)
		if !ok || !owned(svc.Key) {
			continue
		}
		if ds, ok := procDests[svc.Key]; ok {
			svc.Destinations = ds
		} else {
			// Not listed: no /proc file, or the kernel skipped it (see
			// procread.go), or it appeared in between. Ask netlink.
			if procDests != nil {
				missing++
			}
			ds, err := h.readDests(svc.Key)
			reads++
			progress.Report(ctx)
			if err != nil {
				failed[svc.Key] = err
				continue
			}
			svc.Destinations = ds
		}
		have = append(have, svc)
	}
	if missing > 0 {
		h.log.Debug("services missing from /proc/net/ip_vs read over netlink", "reason", "the kernel's listing skips entries when other namespaces have IPVS services", "count", missing)
	}
	slices.SortFunc(have, func(a, b ipvs.Service) int { return a.Key.Compare(b.Key) })
	return have, reads, failed, nil
}

// readDests reads one service's destinations in kernel list order.
func (h *Handle) readDests(k ipvs.Key) ([]ipvs.Destination, error) {
	kds, err := h.k.GetDestinations(kernelKey(k))
	if err != nil {
		return nil, fmt.Errorf("read destinations of %s: %w", k, err)
	}
	ds := make([]ipvs.Destination, 0, len(kds))
	for _, kd := range kds {
		if d, ok := destFromKernel(kd); ok {
			ds = append(ds, d)
		}
	}
	return ds, nil
}
