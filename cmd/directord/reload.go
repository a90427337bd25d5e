package main

import (
	"context"
	"fmt"
	"time"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/control"
	"github.com/anycast-director/director/routing/routerconfig"
)

// reload re-reads the configuration file. A file with errors is rejected as a
// whole (its errors are logged and returned, the first config.MaxShown of
// them in full) and the running configuration stays; dryRun only previews
// the changes. Reading the file is bounded (config.LoadContext: regular files
// only, 8 MiB, 10 s). It is the API's reload: it returns the changes.
func (d *daemon) reload(ctx context.Context, dryRun bool) ([]announcer.Change, announcer.ConfigVersion, error) {
	return d.reloadFile(ctx, dryRun, true)
}

// reloadFile is reload; without withChanges (SIGHUP, where nobody reads
// them) it skips the preview, which plans every service twice before the
// reload plans them again: at 100 services under emulation that was most
// of the time from the signal to the kernel.
func (d *daemon) reloadFile(ctx context.Context, dryRun, withChanges bool) ([]announcer.Change, announcer.ConfigVersion, error) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	running := d.loop.Status().Config
	cfg, err := config.LoadContext(ctx, d.path)
	if err != nil {
		err = &control.ConfigFileError{Path: d.path, Err: err}
		if !dryRun {
			d.metrics.ObserveReload(time.Now(), err)
			d.loop.Events().Append(announcer.Event{Time: time.Now(), Kind: announcer.EventReload,
				Subject: d.path, To: "rejected", Reason: err.Error()})
		}
		return nil, running, err
	}
	for _, w := range cfg.Warnings {
		d.log.Warn("configuration warning", "reason", w.Error())
	}
	if dryRun {
		changes, err := d.loop.Preview(ctx, cfg)
		return changes, running, err
	}
	d.warnRestartOnly(d.current(), cfg)
	var changes []announcer.Change
	if withChanges {
		changes, _ = d.loop.Preview(ctx, cfg)
	}
	v, err := d.loop.Reload(ctx, cfg)
	d.metrics.ObserveReload(time.Now(), err)
	if err != nil {
		return nil, running, err
	}
	d.level.Set(parseLevel(cfg.Log.Level))
	return changes, v, nil
}

// warnRestartOnly logs settings that a reload cannot change in a running
// process, so an operator is not surprised that they did not take effect.
func (d *daemon) warnRestartOnly(old, cfg *config.Config) {
	check := func(name string, changed bool) {
		if changed {
			d.log.Warn("setting changed but needs a restart to take effect", "reason", name)
		}
	}
	check("director.name", old.Director.Name != cfg.Director.Name)
	check("director.vip_interface", old.Director.VIPInterface != cfg.Director.VIPInterface)
	check("director.announce", old.Director.Announce != cfg.Director.Announce)
	check("api", fmt.Sprint(old.API) != fmt.Sprint(cfg.API))
	check("metrics.listen", old.Metrics.Listen != cfg.Metrics.Listen)
	check("log.format", old.Log.Format != cfg.Log.Format)
	check("kernel", old.Kernel != cfg.Kernel)
	check("director.state_dir", old.Director.StateDir != cfg.Director.StateDir)
	check("director.vip_binding", old.Director.VIPBinding != cfg.Director.VIPBinding)
}

// redactedPassword stands in for MD5 keys in what the API returns: the key
// is a secret and never leaves the daemon (`directord router-config FILE`,
// run where the key file is readable, prints it).
const redactedPassword = "<redacted>"

// routerConfig renders the routers' side of this director's peering for the
// API, with the MD5 keys redacted.
func (d *daemon) routerConfig(flavor string, opts routerconfig.Options) ([]byte, error) {
	cfg := d.current()
	if cfg.BGP != nil {
		cfg = cfg.Clone()
		for i := range cfg.BGP.Peers {
			if cfg.BGP.Peers[i].Password != "" {
				cfg.BGP.Peers[i].Password = redactedPassword
			}
		}
	}
	return routerconfig.Generate(flavor, []*config.Config{cfg}, opts)
}
