//go:build linux

package main

import (
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/statedir"
)

// The judgements of the crash-anywhere test (TestVMCrashAnywhere), as plain
// functions so that host-side unit tests (crash_checks_fail_test.go) can
// feed them wrong outcomes and see each one reported. Each returns what
// differs, one line per difference; none means the check passed.

// kernelDest is one destination as /proc/net/ip_vs lists it.
type kernelDest struct {
	Addr     string // "10.77.0.11:80"
	Fwd      string // Route, Tunnel, Masq
	Weight   int
	Active   int
	Inactive int
}

// kernelService is one virtual service with its destinations in kernel list
// order (the order the mh table is built from; ipvsadm -Ln sorts them).
type kernelService struct {
	Scheduler string
	Dests     []kernelDest
}

// dest returns the destination at addr.
func (s kernelService) dest(addr string) (kernelDest, bool) {
	for _, d := range s.Dests {
		if d.Addr == addr {
			return d, true
		}
	}
	return kernelDest{}, false
}

// maxDiffLines bounds a report: a thousand wrong services need not be
// listed one by one to be understood.
const maxDiffLines = 20

// ourServices returns the services of k that are not someone else's.
func ourServices(k map[string]kernelService, foreign []string) map[string]kernelService {
	out := make(map[string]kernelService, len(k))
	for key, s := range k {
		if !slices.Contains(foreign, key) {
			out[key] = s
		}
	}
	return out
}

// withoutCounts returns k with the connection counts zeroed: they are
// traffic, not state.
func withoutCounts(k map[string]kernelService) map[string]kernelService {
	out := make(map[string]kernelService, len(k))
	for key, s := range k {
		ds := make([]kernelDest, len(s.Dests))
		for i, d := range s.Dests {
			ds[i] = kernelDest{Addr: d.Addr, Fwd: d.Fwd, Weight: d.Weight}
		}
		out[key] = kernelService{Scheduler: s.Scheduler, Dests: ds}
	}
	return out
}

// convergenceGap compares the services of ours in the kernel with those
// the running configuration has ("vip:port"): services left over that the
// configuration does not have, and configured ones missing.
func convergenceGap(ours map[string]kernelService, configured []string) []string {
	var extra, missing []string
	for key := range ours {
		if !slices.Contains(configured, key) {
			extra = append(extra, key)
		}
	}
	for _, key := range configured {
		if _, ok := ours[key]; !ok {
			missing = append(missing, key)
		}
	}
	var out []string
	if len(extra) > 0 {
		slices.Sort(extra)
		out = append(out, fmt.Sprintf("%d services in the kernel that the configuration does not have: %s", len(extra), abbreviate(extra)))
	}
	if len(missing) > 0 {
		slices.Sort(missing)
		out = append(out, fmt.Sprintf("%d configured services not in the kernel: %s", len(missing), abbreviate(missing)))
	}
	return out
}

// abbreviate joins the first few keys and says how many more there are.
func abbreviate(keys []string) string {
	const shown = 5
	if len(keys) <= shown {
		return strings.Join(keys, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(keys[:shown], ", "), len(keys)-shown)
}

// diffKernel lists how got differs from want, the kernel state of a clean
// start: services missing or extra, another scheduler, destinations
// missing, extra, with another forwarding method or weight, or in another
// order (mh builds its table from the order). Connection counts are not
// compared: they are traffic, not state.
func diffKernel(want, got map[string]kernelService) []string {
	var out []string
	for _, key := range slices.Sorted(mapKeys(want, got)) {
		w, inWant := want[key]
		g, inGot := got[key]
		switch {
		case !inGot:
			out = append(out, fmt.Sprintf("service %s missing (a clean start has it: %s)", key, w))
		case !inWant:
			out = append(out, fmt.Sprintf("service %s extra (a clean start does not have it): %s", key, g))
		default:
			out = append(out, diffService(key, w, g)...)
		}
	}
	if len(out) > maxDiffLines {
		out = append(out[:maxDiffLines], fmt.Sprintf("... and %d more differences", len(out)-maxDiffLines))
	}
	return out
}

// diffService lists how one service differs.
func diffService(key string, want, got kernelService) []string {
	var out []string
	if want.Scheduler != got.Scheduler {
		out = append(out, fmt.Sprintf("service %s: scheduler %s, a clean start has %s", key, got.Scheduler, want.Scheduler))
	}
	for _, wd := range want.Dests {
		gd, ok := got.dest(wd.Addr)
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("service %s: destination %s missing (a clean start has it, %s weight %d)", key, wd.Addr, wd.Fwd, wd.Weight))
		case gd.Fwd != wd.Fwd:
			out = append(out, fmt.Sprintf("service %s: destination %s forwards by %s, a clean start by %s", key, wd.Addr, gd.Fwd, wd.Fwd))
		case gd.Weight != wd.Weight:
			out = append(out, fmt.Sprintf("service %s: destination %s has weight %d, a clean start %d", key, wd.Addr, gd.Weight, wd.Weight))
		}
	}
	for _, gd := range got.Dests {
		if _, ok := want.dest(gd.Addr); !ok {
			out = append(out, fmt.Sprintf("service %s: destination %s extra (%s weight %d; a clean start does not have it)", key, gd.Addr, gd.Fwd, gd.Weight))
		}
	}
	if len(out) == 0 && !slices.Equal(destAddrs(want), destAddrs(got)) {
		out = append(out, fmt.Sprintf("service %s: destinations in the order %v, a clean start %v", key, destAddrs(got), destAddrs(want)))
	}
	return out
}

// String renders a service for a report: scheduler, then each destination
// as address/forwarding/weight in kernel order.
func (s kernelService) String() string {
	var ds []string
	for _, d := range s.Dests {
		ds = append(ds, fmt.Sprintf("%s/%s/%d", d.Addr, d.Fwd, d.Weight))
	}
	return strings.TrimSpace(s.Scheduler + " " + strings.Join(ds, " "))
}

// destAddrs lists the destinations' addresses in kernel order.
func destAddrs(s kernelService) []string {
	var out []string
	for _, d := range s.Dests {
		out = append(out, d.Addr)
	}
	return out
}

// mapKeys returns the keys of both maps.
func mapKeys(a, b map[string]kernelService) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range a {
			if !yield(k) {
				return
			}
		}
		for k := range b {
			if _, dup := a[k]; !dup && !yield(k) {
				return
			}
		}
	}
}

// foreignState is what someone else keeps in the director's kernel: IPVS
// services by key (absent ones missing from the map) and whether each
// address is on the interface.
type foreignState struct {
	Services map[string]kernelService
	Addrs    map[string]bool
}

// diffForeign lists what changed in someone else's services and addresses
// between before and after: any change counts, connection counts aside.
func diffForeign(before, after foreignState) []string {
	var out []string
	for _, key := range slices.Sorted(mapKeys(before.Services, after.Services)) {
		b, wasThere := before.Services[key]
		a, isThere := after.Services[key]
		switch {
		case wasThere && !isThere:
			out = append(out, fmt.Sprintf("someone else's service %s was removed (it was %s)", key, b))
		case !wasThere && isThere:
			out = append(out, fmt.Sprintf("someone else's service %s appeared: %s", key, a))
		case a.String() != b.String():
			out = append(out, fmt.Sprintf("someone else's service %s changed: %s, it was %s", key, a, b))
		}
	}
	for _, addr := range slices.Sorted(func(yield func(string) bool) {
		for a := range before.Addrs {
			if !yield(a) {
				return
			}
		}
	}) {
		if before.Addrs[addr] != after.Addrs[addr] {
			out = append(out, fmt.Sprintf("someone else's address %s: present %v, it was %v", addr, after.Addrs[addr], before.Addrs[addr]))
		}
	}
	return out
}

// checkStateFiles lists the files a kill left damaged: the state file that
// does not read back, a kept configuration missing or not matching its
// digest, a state file set aside (a start found it unusable), and a
// configuration file, or a backup a rollback kept of it, that is not one
// of versions in full.
func checkStateFiles(stateDir, cfgPath string, versions []string) []string {
	var out []string
	f, err := statedir.NewStore(stateDir).Read()
	switch {
	case err != nil:
		out = append(out, fmt.Sprintf("the state file does not read back: %v", err))
	case f == nil:
		out = append(out, "there is no state file")
	default:
		for _, c := range f.Configs {
			data, err := os.ReadFile(filepath.Join(stateDir, statedir.ConfigsDir, c.Digest+".yaml"))
			if err != nil || config.Digest(data) != c.Digest {
				out = append(out, fmt.Sprintf("kept configuration %d (%s) is missing or damaged: %d bytes, digest %s, %v", c.Version, c.Digest, len(data), config.Digest(data), err))
			}
		}
	}
	aside, _ := filepath.Glob(filepath.Join(stateDir, statedir.FileName+".bad-*"))
	for _, a := range aside {
		out = append(out, fmt.Sprintf("a state file was set aside as unusable: %s", a))
	}
	backups, _ := filepath.Glob(cfgPath + ".bak-*")
	for _, p := range append([]string{cfgPath}, backups...) {
		data, err := os.ReadFile(p)
		if err != nil || !slices.Contains(versions, string(data)) {
			out = append(out, fmt.Sprintf("%s is not one of the configuration versions in full (%d bytes, %v)", p, len(data), err))
		}
	}
	return out
}

// temporaries lists the temporary files of interrupted writes
// (internal/atomicfile's .NAME.tmpRANDOM) in the state directory and its
// configs, and next to the configuration file.
func temporaries(stateDir, cfgPath string) []string {
	var out []string
	for _, dir := range []string{stateDir, filepath.Join(stateDir, statedir.ConfigsDir), filepath.Dir(cfgPath)} {
		names, _ := filepath.Glob(filepath.Join(dir, ".*.tmp*"))
		out = append(out, names...)
	}
	return out
}

// leftTemporaries lists those of the temporaries a killed process left
// (before) that are still there after a restart (after): a start removes
// them, as nothing else would.
func leftTemporaries(before, after []string) []string {
	var out []string
	for _, p := range before {
		if slices.Contains(after, p) {
			out = append(out, fmt.Sprintf("temporary file %s of the killed process is still there after the restart", p))
		}
	}
	return out
}

// fsEvent is one inotify event: the file's path and the event mask.
type fsEvent struct {
	Path string
	Mask uint32
}

// parseInotify decodes a buffer read from an inotify descriptor; dirs maps
// watch descriptors to the watched directories.
func parseInotify(buf []byte, dirs map[int32]string) ([]fsEvent, error) {
	var out []fsEvent
	for len(buf) > 0 {
		if len(buf) < syscall.SizeofInotifyEvent {
			return out, fmt.Errorf("inotify: %d bytes left, less than an event header", len(buf))
		}
		wd := int32(binary.NativeEndian.Uint32(buf[0:4]))
		mask := binary.NativeEndian.Uint32(buf[4:8])
		n := int(binary.NativeEndian.Uint32(buf[12:16]))
		if len(buf) < syscall.SizeofInotifyEvent+n {
			return out, fmt.Errorf("inotify: an event's name runs past the buffer")
		}
		name := strings.TrimRight(string(buf[syscall.SizeofInotifyEvent:syscall.SizeofInotifyEvent+n]), "\x00")
		out = append(out, fsEvent{Path: filepath.Join(dirs[wd], name), Mask: mask})
		buf = buf[syscall.SizeofInotifyEvent+n:]
	}
	return out, nil
}

// inPlaceWrites lists the writes into the final name of a file that must
// only ever be replaced whole (by writing a temporary file and renaming it
// over the name): a file created, written or closed after writing under
// its final name could be seen, or be left by a kill, half-written, even if
// no kill happened to hit that moment. final says which paths are such
// files.
func inPlaceWrites(events []fsEvent, final func(path string) bool) []string {
	kinds := []struct {
		bit  uint32
		name string
	}{{syscall.IN_CREATE, "created"}, {syscall.IN_MODIFY, "written"}, {syscall.IN_CLOSE_WRITE, "closed after writing"}}
	var paths []string
	seen := map[string]uint32{} // path -> the in-place kinds seen
	for _, e := range events {
		for _, k := range kinds {
			if e.Mask&syscall.IN_ISDIR == 0 && e.Mask&k.bit != 0 && final(e.Path) {
				if seen[e.Path] == 0 {
					paths = append(paths, e.Path)
				}
				seen[e.Path] |= k.bit
			}
		}
	}
	var out []string
	for _, p := range paths {
		var what []string
		for _, k := range kinds {
			if seen[p]&k.bit != 0 {
				what = append(what, k.name)
			}
		}
		out = append(out, fmt.Sprintf("%s %s in place, not replaced by a rename", p, strings.Join(what, ", ")))
	}
	return out
}

// stateFinal reports whether path is the final name of a file directord
// replaces whole: the state file, a kept configuration, or the
// configuration file (a rollback writes it).
func stateFinal(stateDir, cfgPath string) func(string) bool {
	return func(path string) bool {
		switch {
		case path == cfgPath, path == filepath.Join(stateDir, statedir.FileName):
			return true
		case filepath.Dir(path) == filepath.Join(stateDir, statedir.ConfigsDir):
			return strings.HasSuffix(path, ".yaml") && !strings.HasPrefix(filepath.Base(path), ".")
		}
		return false
	}
}
