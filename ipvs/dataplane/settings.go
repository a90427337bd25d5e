package dataplane

import (
	"context"
	"errors"
	"fmt"

	"github.com/anycast-director/director/ipvs"
)

// Settings keeps the namespace-wide IPVS settings as want says and reports
// what the kernel holds afterwards: it reads the sysctls and the sync
// daemons and changes only what differs, so calling it on every resync
// tick costs reads and repairs drift. The error lists what could not be
// set; the report is filled either way. Sync failures are in
// SettingsReport.Sync.Error, not in the error: a director whose sync daemons
// do not run still forwards correctly.
func (h *Handle) Settings(ctx context.Context, want ipvs.Settings) (ipvs.SettingsReport, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	var rep ipvs.SettingsReport
	if err := h.usable(ctx); err != nil {
		return rep, err
	}
	var err error
	rep.Sysctls, err = h.keepSysctls(want)
	rep.Sync = h.keepSync(want.Sync)
	return rep, err
}

// Sysctls reads back the flow table's sysctls and the others Settings
// keeps, without writing, for status. Unreadable ones are left out.
func (h *Handle) Sysctls() map[string]int {
	h.mu.Lock()
	defer h.mu.Unlock()
	read, err := h.keepSysctls(ipvs.Settings{})
	if err != nil {
		h.log.Warn("read IPVS sysctls", "err", err)
	}
	return read
}

// keepSync makes the sync daemons what want says: with want set, a master
// and a backup with its settings (a running daemon with the same settings is
// adopted untouched, one with other settings restarted); with want nil, the
// daemons this handle started or adopted are stopped and any other is left
// alone. A daemon this handle keeps that stopped or changed is drift,
// repaired and reported.
func (h *Handle) keepSync(want *ipvs.SyncConfig) ipvs.SyncStatus {
	st := ipvs.SyncStatus{Configured: want != nil}
	sk, err := h.syncKernel()
	if err != nil {
		if want != nil {
			st.Error = err.Error()
		}
		return st
	}
	have, err := sk.daemons()
	if err != nil {
		h.closeSync()
		st.Error = err.Error()
		return st
	}
	var errs []error
	if want == nil {
		errs = h.stopOwnedSync(sk, have)
	} else {
		for _, d := range want.Daemons() {
			if err := h.keepDaemon(sk, d, have); err != nil {
				errs = append(errs, err)
			}
		}
		h.syncOwned = true
	}
	if st.Daemons, err = sk.daemons(); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		st.Error = err.Error()
	}
	return st
}

// keepDaemon starts d unless a daemon of its state runs with its settings.
func (h *Handle) keepDaemon(sk syncKernel, d ipvs.SyncDaemon, have []ipvs.SyncDaemon) error {
	mtu, err := sk.mtu(d.Interface)
	if err != nil {
		return fmt.Errorf("IPVS sync daemon %s: interface %q: %w (set ipvs.sync.interface to the interface the directors share)", d.State, d.Interface, err)
	}
	want := d.Normalized(mtu)
	var cur *ipvs.SyncDaemon
	for i := range have {
		if have[i].State == d.State {
			cur = &have[i]
		}
	}
	switch {
	case cur != nil && *cur == want:
		if !h.syncOwned {
			h.log.Info("IPVS sync daemon already running with the configured settings; adopted", "reason", want.String())
		}
	case cur != nil:
		if err := sk.stop(d.State); err != nil {
			return err
		}
		if err := sk.start(d); err != nil {
			return err
		}
		detail := fmt.Sprintf("ran as %s, restarted as %s", cur, want)
		if h.syncOwned && h.syncKept[d.State] == want {
			h.repaired(Repair{Kind: RepairSyncDaemon, Subject: d.State.String(), Detail: detail})
		} else {
			h.log.Warn("IPVS sync daemon ran with other settings; restarted as configured", "reason", detail)
		}
	default:
		if err := sk.start(d); err != nil {
			return err
		}
		if h.syncOwned && h.syncKept[d.State] == want {
			h.repaired(Repair{Kind: RepairSyncDaemon, Subject: d.State.String(), Detail: "had stopped; started as " + want.String()})
		} else {
			h.log.Info("IPVS sync daemon started", "reason", want.String())
		}
	}
	h.syncKept[d.State] = want
	return nil
}

// stopOwnedSync stops the daemons this handle keeps, once the configuration
// no longer asks for them; daemons someone else started stay.
func (h *Handle) stopOwnedSync(sk syncKernel, have []ipvs.SyncDaemon) []error {
	if !h.syncOwned {
		return nil
	}
	var errs []error
	for _, d := range have {
		if err := sk.stop(d.State); err != nil {
			errs = append(errs, err)
			continue
		}
		h.log.Info("IPVS sync daemon stopped: no longer configured", "reason", d.String())
	}
	h.syncOwned = false
	clear(h.syncKept)
	return errs
}

// syncKernel opens the sync daemons' netlink socket on first use.
func (h *Handle) syncKernel() (syncKernel, error) {
	if h.sync != nil {
		return h.sync, nil
	}
	sk, err := h.cfg.newSync(h.nsPath)
	if err != nil {
		return nil, fmt.Errorf("IPVS sync daemons: %w", err)
	}
	h.sync = sk
	return sk, nil
}

// closeSync drops the socket after a failure, so the next call opens a
// fresh one.
func (h *Handle) closeSync() {
	if h.sync != nil {
		h.sync.close()
		h.sync = nil
	}
}
