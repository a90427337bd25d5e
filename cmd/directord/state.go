package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control"
	"github.com/anycast-director/director/internal/atomicfile"
	"github.com/anycast-director/director/routing/kernel"
	"github.com/anycast-director/director/statedir"
)

// openState reads the state directory (director.state_dir) and starts its
// writer. It never fails: state that cannot be used is set aside, logged,
// and reported in status and the directord_state_lost metric, and the
// daemon runs from its configuration alone.
func (d *daemon) openState(cfg *config.Config, binding kernel.Binding) *statedir.Restored {
	store := statedir.NewStore(cfg.Director.StateDir)
	r := store.Restore(time.Now())
	switch {
	case r.Lost:
		reason := "the state file could not be moved aside"
		if r.SetAside != "" {
			reason = "the unusable file was kept as " + r.SetAside
		}
		d.log.Error("saved state lost: starting from the configuration alone, without the operator overrides and the configuration history",
			"err", r.Err, "reason", reason)
	case r.File == nil:
		d.log.Info("no saved state; starting from the configuration", "reason", "no "+store.Path()+" yet (first start)")
	}
	for _, w := range r.Warnings {
		d.log.Warn("saved state partly restored", "reason", w)
	}
	marks := statedir.Marks{Announce: cfg.Director.Announce.String(), VIPInterface: cfg.Director.VIPInterface,
		VIPBinding: binding.String(), Protocol: cfg.Kernel.Protocol, RouteTable: cfg.Kernel.Table}
	if r.File != nil {
		if err := releaseStaleMarks(context.Background(), d.log, r.File.Owned.Marks, marks); err != nil {
			d.log.Error("removing VIP bindings or routes made with the previous marks failed; remove them by hand", "err", err)
		}
	}
	d.state = statedir.NewWriter(store, d.log, statedir.WriterOptions{Restored: r, Marks: marks})
	d.closers = append(d.closers, d.state.Close)
	return &r
}

// rollback re-applies a kept configuration and makes it the configuration
// file, so a later SIGHUP or restart keeps it. The file is written first
// (atomically, the replaced file kept next to it), then the version is
// loaded: a crash in between starts the daemon on the rolled-back file,
// as the operator asked. A file that cannot be written does not stop the
// rollback (at 3 a.m. the rollback matters more); the result says why, and
// a reload would load the file again.
func (d *daemon) rollback(ctx context.Context, version int) (control.RollbackResult, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	cfg, kept, err := d.loop.RollbackTarget(ctx, version)
	if err != nil {
		return control.RollbackResult{}, err
	}
	var res control.RollbackResult
	file, backup, ferr := replaceConfigFile(d.path, cfg.Content, time.Now())
	if ferr != nil {
		res.FileError = ferr.Error()
		d.log.Error("rollback: the configuration file keeps the old version; a reload or restart would load it again", "err", ferr)
	} else {
		res.File, res.Backup = file, backup
	}
	v, err := d.loop.RollbackTo(ctx, cfg, kept)
	d.metrics.ObserveReload(time.Now(), err)
	if err != nil {
		return control.RollbackResult{}, err
	}
	d.level.Set(parseLevel(cfg.Log.Level))
	res.Version = v
	if backup != "" {
		d.log.Info("rollback wrote the configuration file", "reason", fmt.Sprintf("version %d in %s; the replaced file is kept as %s", kept.Version, file, backup))
	}
	return res, nil
}

// replaceConfigFile makes path hold content. A symbolic link is followed,
// so the file it points to is replaced and the link stays (configuration
// management often links). The replaced file is kept as FILE.bak-TIME
// (a hard link, so its owner and mode stay), unless it already holds
// content. It returns the file written and the backup.
func replaceConfigFile(path string, content []byte, now time.Time) (file, backup string, err error) {
	file, err = filepath.EvalSymlinks(path)
	if err != nil {
		return "", "", fmt.Errorf("find the configuration file %s: %w", path, err)
	}
	fh, err := os.OpenFile(file, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return "", "", fmt.Errorf("read the configuration file: %w", err)
	}
	defer fh.Close()
	fi, err := fh.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		return "", "", fmt.Errorf("the configuration file %s is not a regular file: it is left alone", file)
	}
	current, err := io.ReadAll(io.LimitReader(fh, 64<<20))
	if err != nil {
		return "", "", fmt.Errorf("read the configuration file: %w", err)
	}
	if config.Digest(current) == config.Digest(content) {
		return file, "", nil
	}
	backup = file + ".bak-" + now.UTC().Format("20060102T150405.000Z")
	if err := os.Link(file, backup); err != nil {
		if werr := atomicfile.Write(backup, current, fi.Mode().Perm()); werr != nil {
			return "", "", fmt.Errorf("keep the replaced file as %s: %w", backup, errors.Join(err, werr))
		}
	}
	if err := atomicfile.Write(file, content, fi.Mode().Perm()); errors.Is(err, syscall.EBUSY) {
		// The file is a mount point (one file bound into a container):
		// a rename cannot replace it, so it is rewritten in place. Not
		// atomic, but the backup holds the replaced version.
		if err := rewriteInPlace(file, content); err != nil {
			return "", "", fmt.Errorf("rewrite the bind-mounted configuration file %s in place: %w (the replaced file is kept as %s)", file, err, backup)
		}
	} else if err != nil {
		return "", "", fmt.Errorf("%w (the file's folder must be writable by directord: see docs/operations.md, \"Rollback\")", err)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		_ = os.Chown(file, int(st.Uid), int(st.Gid)) // best effort: only root may give the file back to its owner
	}
	return file, backup, nil
}

// rewriteInPlace truncates file and writes content into the same inode,
// then syncs it.
func rewriteInPlace(file string, content []byte) error {
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_TRUNC, 0)
	if err != nil {
		return err
	}
	if _, err := f.Write(content); err != nil {
		f.Close()
		return err
	}
	return errors.Join(f.Sync(), f.Close())
}

// The state writer is what the loop saves through.
var _ announcer.StateSaver = (*statedir.Writer)(nil)

// releaseStaleMarks removes the VIP bindings and the announce: kernel routes
// a previous process made with marks this configuration no longer uses: a
// different VIP interface, binding, protocol number or routing table, or
// routes after a change from announce: kernel. The adapters find and clean
// the bindings and routes of the current marks themselves; the old ones
// would stay forever, and a route left in a table the local routing daemon
// redistributes would keep attracting traffic. Nothing without the old
// marks is touched.
func releaseStaleMarks(ctx context.Context, log *slog.Logger, old, cur statedir.Marks) error {
	var errs []error
	if old.VIPInterface != "" && (old.VIPInterface != cur.VIPInterface || old.VIPBinding != cur.VIPBinding || old.Protocol != cur.Protocol) {
		errs = append(errs, releaseVIPs(ctx, log, old))
	}
	if old.Announce == config.AnnounceKernel.String() && (cur.Announce != old.Announce || old.RouteTable != cur.RouteTable ||
		old.Protocol != cur.Protocol) {
		errs = append(errs, releaseRoutes(ctx, log, old))
	}
	return errors.Join(errs...)
}

// releaseVIPs unbinds every VIP bound with the old marks. An interface that
// is gone took its addresses with it.
func releaseVIPs(ctx context.Context, log *slog.Logger, old statedir.Marks) error {
	if _, err := net.InterfaceByName(old.VIPInterface); err != nil {
		return nil
	}
	binding := kernel.BindAddress
	if old.VIPBinding == kernel.BindLocalRoute.String() {
		binding = kernel.BindLocalRoute
	}
	v, err := kernel.NewVIPs(log, kernel.VIPOptions{Interface: old.VIPInterface, Protocol: old.Protocol, Binding: binding})
	if err != nil {
		return fmt.Errorf("release the VIPs bound with the previous marks: %w", err)
	}
	defer v.Close()
	owned, err := v.Owned(ctx)
	if err != nil || len(owned) == 0 {
		return err
	}
	log.Info("unbinding VIPs bound with the previous marks", "reason", fmt.Sprintf("%d VIPs %s on %s with protocol %d; now %s",
		len(owned), old.VIPBinding, old.VIPInterface, old.Protocol, "another interface, binding or protocol"))
	return v.Set(ctx, nil)
}

// releaseRoutes withdraws every route of the old table and protocol.
func releaseRoutes(ctx context.Context, log *slog.Logger, old statedir.Marks) error {
	a, err := kernel.NewAdvertiser(log, kernel.AdvertiserOptions{Table: old.RouteTable, Protocol: old.Protocol, Interface: old.VIPInterface})
	if err != nil {
		return fmt.Errorf("release the routes of the previous marks: %w", err)
	}
	defer a.Close()
	ads, err := a.Advertised(ctx)
	if err != nil || len(ads) == 0 {
		return err
	}
	log.Info("withdrawing routes made with the previous marks", "reason", fmt.Sprintf("%d routes in table %d with protocol %d",
		len(ads), old.RouteTable, old.Protocol))
	return a.Set(ctx, nil)
}
