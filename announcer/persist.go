package announcer

import (
	"context"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"time"

	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/statedir"
)

// StateSaver keeps the loop's durable state: *state.Writer, whose own
// goroutine writes, so the loop never waits for the disk except to record
// new IPVS services before it programs them (writeAheadLimit).
type StateSaver interface {
	// Save hands over the newest state; done is called (from another
	// goroutine) once it, or a newer one, is durable or failed.
	Save(f *statedir.File, contents map[string][]byte, done func(error))
	// Report says how the state directory fares, for status.
	Report() statedir.Report
}

// writeAheadLimit bounds how long a pass waits for the state directory to
// record IPVS services it is about to create. On a disk that slow the pass
// goes on (a crash in that window could leave the new services behind if
// the configuration then drops them); the failure shows in status.
const writeAheadLimit = 2 * time.Second

// persistence is the loop's record of its durable state; only the Run
// goroutine touches it.
type persistence struct {
	saver StateSaver
	// dirty is set when the overrides or the history changed since the
	// last state handed to saver.
	dirty bool
	// ipvs are the IPVS services recorded as owned: a superset of what the
	// kernel holds of ours, because a new service is recorded before it is
	// programmed.
	ipvs map[ipvs.Key]bool
	// restored are the IPVS services the state directory listed at start.
	restored []ipvs.Key
	// vips are the VIPs bound, as last recorded. Routes are not listed:
	// the kernel's are found by their table and protocol (statedir.Marks),
	// and listing them would rewrite the state on every health flap.
	vips []netip.Addr
}

// recordNewServices records the IPVS services of p that are not recorded
// as owned yet, and waits (up to writeAheadLimit) until that is durable,
// so a crash right after programming them cannot leave services that the
// next start does not know it owns.
func (l *Loop) recordNewServices(ctx context.Context, st *state, p *Plan) {
	ps := &st.persist
	if ps.saver == nil {
		return
	}
	added := 0
	for i := range p.IPVS {
		if k := p.IPVS[i].Key; !ps.ipvs[k] {
			if ps.ipvs == nil {
				ps.ipvs = map[ipvs.Key]bool{}
			}
			ps.ipvs[k] = true
			added++
		}
	}
	if added == 0 {
		return
	}
	done := make(chan error, 1)
	l.saveState(st, func(err error) { done <- err })
	t := time.NewTimer(writeAheadLimit)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			l.log.Error("recording new IPVS services in the state directory failed; programming them anyway", "err", err)
		}
	case <-t.C:
		l.log.Warn("recording new IPVS services in the state directory is slow; programming them anyway",
			"reason", fmt.Sprintf("%d new services, no answer from the disk within %s", added, writeAheadLimit))
	case <-ctx.Done():
	}
}

// recordApplied shrinks the owned IPVS services to what the pass left in
// the kernel (the desired services, plus those whose programming failed and
// may still be there; after a failure of the whole Apply, all of them stay),
// and records the VIPs bound. A change is saved after the pass, in the
// background.
func (st *state) recordApplied(p *Plan, res ApplyResult, applyErr error) {
	ps := &st.persist
	if ps.saver == nil {
		return
	}
	if applyErr == nil {
		owned := make(map[ipvs.Key]bool, len(p.IPVS)+len(res.Failed))
		for i := range p.IPVS {
			owned[p.IPVS[i].Key] = true
		}
		for k := range res.Failed {
			if ps.ipvs[k] {
				owned[k] = true
			}
		}
		// owned is a subset of ps.ipvs (recordNewServices added every
		// desired service), so a change shows in the size.
		if len(owned) != len(ps.ipvs) {
			ps.ipvs, ps.dirty = owned, true
		}
	}
	if !slices.Equal(p.LocalVIPs, ps.vips) {
		ps.vips, ps.dirty = slices.Clone(p.LocalVIPs), true
	}
}

// saveChanges hands the state to the saver when it changed. The replies of
// the commands this pass applied are answered once it is durable (or the
// write failed: the change is in force either way, and status says the
// state is not saved); it returns false, with nothing answered, when
// nothing needed saving.
func (l *Loop) saveChanges(st *state, replies []reply) bool {
	if st.persist.saver == nil || !st.persist.dirty {
		return false
	}
	replies = slices.Clone(replies)
	l.saveState(st, func(error) {
		for _, r := range replies {
			r.res <- r.err
		}
	})
	return true
}

// saveState hands the whole state to the saver.
func (l *Loop) saveState(st *state, done func(error)) {
	f, contents := st.stateFile()
	st.persist.dirty = false
	st.persist.saver.Save(f, contents, done)
}

// stateFile renders the durable state.
func (st *state) stateFile() (*statedir.File, map[string][]byte) {
	f := &statedir.File{Director: st.cfg.Director.Name, Overrides: overridesToState(st.overrides)}
	contents := make(map[string][]byte, len(st.history))
	for _, h := range st.history {
		if h.ver.Digest == "" || h.content == nil {
			continue // built in memory (tests): nothing to roll back to after a restart
		}
		f.Configs = append(f.Configs, statedir.Config{Version: h.ver.Version, Digest: h.ver.Digest,
			Source: h.ver.Source, Loaded: h.ver.Loaded, Who: h.ver.Who, Reason: h.ver.Reason})
		contents[h.ver.Digest] = h.content
	}
	for _, k := range slices.SortedFunc(maps.Keys(st.persist.ipvs), ipvs.Key.Compare) {
		f.Owned.IPVS = append(f.Owned.IPVS, statedir.Service{Protocol: k.Protocol, VIP: k.VIP, Port: k.Port})
	}
	f.Owned.VIPs = slices.Clone(st.persist.vips)
	return f, contents
}

// restore takes over what the state directory had: the history (the
// running configuration is added by load), the overrides and the owned
// kernel state. It returns warnings about entries it could not use.
func (st *state) restore(r *statedir.Restored) []string {
	f := r.File
	var warns []string
	for _, c := range f.Configs {
		st.history = append(st.history, loaded{content: r.Contents[c.Digest], ver: ConfigVersion{
			Version: c.Version, Digest: c.Digest, Source: c.Source, Loaded: c.Loaded, Who: c.Who, Reason: c.Reason}})
		st.nextVer = max(st.nextVer, c.Version)
	}
	st.overrides, warns = overridesFromState(f.Overrides)
	st.persist.ipvs = map[ipvs.Key]bool{}
	for _, s := range f.Owned.IPVS {
		k := ipvs.Key{VIP: s.VIP, Port: s.Port, Protocol: s.Protocol}
		st.persist.ipvs[k] = true
		st.persist.restored = append(st.persist.restored, k)
	}
	st.persist.vips = slices.Clone(f.Owned.VIPs)
	return warns
}

// overridesToState lists overrides in a stable order: director, VIPs,
// drains, weights, each sorted.
func overridesToState(o Overrides) []statedir.Override {
	var out []statedir.Override
	note := func(k statedir.OverrideKind, n Note) statedir.Override {
		return statedir.Override{Kind: k, Reason: n.Reason, Who: n.Who, Created: n.Created, Expires: n.Expires}
	}
	if o.Director != nil {
		out = append(out, note(statedir.DrainDirector, *o.Director))
	}
	for _, v := range slices.SortedFunc(maps.Keys(o.DisabledVIPs), netip.Addr.Compare) {
		s := note(statedir.DisableVIP, o.DisabledVIPs[v])
		s.Address = v
		out = append(out, s)
	}
	for _, r := range slices.SortedFunc(maps.Keys(o.Drained), compareRefs) {
		s := note(statedir.DrainBackend, o.Drained[r])
		s.Service, s.Address, s.Port = r.Service, r.Addr, r.Port
		out = append(out, s)
	}
	for _, r := range slices.SortedFunc(maps.Keys(o.Weights), compareRefs) {
		w := o.Weights[r]
		s := note(statedir.SetWeight, w.Note)
		s.Service, s.Address, s.Port, s.Weight = r.Service, r.Addr, r.Port, w.Weight
		out = append(out, s)
	}
	return out
}

// compareRefs orders backend references by service, address and port.
func compareRefs(a, b BackendRef) int {
	if a.Service != b.Service {
		if a.Service < b.Service {
			return -1
		}
		return 1
	}
	if c := a.Addr.Compare(b.Addr); c != 0 {
		return c
	}
	return int(a.Port) - int(b.Port)
}

// overridesFromState rebuilds the overrides; entries that make no sense
// (an unknown kind, a missing address, a weight out of range) are skipped
// with a warning.
func overridesFromState(in []statedir.Override) (Overrides, []string) {
	o := Overrides{}.clone()
	var warns []string
	for _, s := range in {
		n := Note{Reason: s.Reason, Who: s.Who, Created: s.Created, Expires: s.Expires}
		ref := BackendRef{Service: s.Service, Addr: s.Address, Port: s.Port}
		switch {
		case s.Kind == statedir.DrainDirector:
			o.Director = &n
		case !s.Address.IsValid():
			warns = append(warns, fmt.Sprintf("override %q without an address skipped", s.Kind))
		case s.Kind == statedir.DisableVIP:
			o.DisabledVIPs[s.Address] = n
		case s.Kind == statedir.DrainBackend:
			o.Drained[ref] = n
		case s.Kind == statedir.SetWeight && s.Weight >= 0 && s.Weight <= 65535:
			o.Weights[ref] = WeightNote{Note: n, Weight: s.Weight}
		default:
			warns = append(warns, fmt.Sprintf("override %q on %s (weight %d) skipped: not understood", s.Kind, ref, s.Weight))
		}
	}
	return o, warns
}

// stateReport returns the state directory's report for status (nil when
// no state is saved).
func (l *Loop) stateReport() *statedir.Report {
	if l.st.persist.saver == nil {
		return nil
	}
	r := l.st.persist.saver.Report()
	return &r
}
