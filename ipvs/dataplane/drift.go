package dataplane

import (
	"maps"
	"slices"

	"github.com/anycast-director/director/ipvs"
)

// Repair kinds, the values of Repair.Kind (and of the metric's kind label).
const (
	// RepairService: an owned IPVS service or its destinations were
	// deleted or changed by someone else and programmed again.
	RepairService = "ipvs_service"
	// RepairSysctl: a managed IPVS sysctl was changed and set back.
	RepairSysctl = "ipvs_sysctl"
	// RepairSyncDaemon: a sync daemon was stopped or restarted with other
	// settings and started again as configured.
	RepairSyncDaemon = "ipvs_sync_daemon"
)

// Repair is one piece of drift found in the kernel and undone: what this
// handle had programmed was changed behind its back.
type Repair struct {
	// Kind is one of the Repair* constants.
	Kind string
	// Subject is what was repaired ("tcp/198.18.0.10:80", "sloppy_tcp").
	Subject string
	// Detail says what had changed.
	Detail string
}

// WithRepairHook calls f after every repair (from the goroutine that called
// Apply or Settings, with the handle locked: f must not call the handle).
// Each repair is also logged at warning level.
func WithRepairHook(f func(Repair)) Option {
	return func(c *config) { c.onRepair = f }
}

// repaired logs r and hands it to the hook.
func (h *Handle) repaired(r Repair) {
	h.log.Warn("kernel state changed behind directord's back; repaired", "kind", r.Kind, "subject", r.Subject, "reason", r.Detail)
	if h.cfg.onRepair != nil {
		h.cfg.onRepair(r)
	}
}

// reportDrift logs and reports the services a full read found changed
// behind this handle's back: repaired when this Apply programmed them again,
// else (their writes failed) left failed in the report, so their VIPs are
// not advertised.
func (h *Handle) reportDrift(drift map[ipvs.Key]string, rep *Report) {
	for _, k := range slices.SortedFunc(maps.Keys(drift), ipvs.Key.Compare) {
		if err := rep.Failed[k]; err != nil {
			h.log.Error("IPVS service changed behind directord's back and could not be restored", "vip", k.String(), "reason", drift[k], "err", err)
			continue
		}
		h.repaired(Repair{Kind: RepairService, Subject: k.String(), Detail: drift[k]})
	}
}

// view is the service as the entry records it, nil when it does not exist.
func (e *entry) view() *ipvs.Service {
	if !e.exists {
		return nil
	}
	return &e.have
}
