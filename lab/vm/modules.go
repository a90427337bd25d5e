package vm

import (
	"bufio"
	"fmt"
	"io"
	"path"
	"strings"
)

// Module is one kernel module file that the guest's /init loads, in order.
type Module struct {
	// Name is the module name as the kernel knows it (dashes become underscores).
	Name string
	// Path is the file's path relative to /lib/modules/<version>, as in modules.dep.
	Path string
	// Optional modules may fail to load without failing the boot: they are soft
	// dependencies (for example crc32c_intel, which needs SSE4.2 that the
	// emulated CPU lacks) whose alternative is loaded too.
	Optional bool
}

// ModuleRequest names a module the VM needs.
type ModuleRequest struct {
	Name string
	// IfPresent skips the module silently when this kernel does not ship it
	// (ip_vs_twos is newer than 6.1): the scheduler list can then name every
	// scheduler without tracking which kernel added which.
	IfPresent bool
}

// ModuleIndex is what depmod wrote for one kernel: enough to turn module names
// into an ordered list of files without running modprobe in the guest.
type ModuleIndex struct {
	deps    map[string][]string // module path -> dependency paths, as modules.dep lists them
	byName  map[string]string   // module name -> path
	builtin map[string]bool     // module names compiled into the kernel
	softPre map[string][]string // module name -> names or aliases to load before it
	aliases map[string][]string // exact alias -> module names
}

// moduleName turns "kernel/crypto/crc32c-intel.ko.xz" into "crc32c_intel".
func moduleName(p string) string {
	base := path.Base(p)
	for _, ext := range []string{".xz", ".zst", ".gz"} {
		base = strings.TrimSuffix(base, ext)
	}
	base = strings.TrimSuffix(base, ".ko")
	return strings.ReplaceAll(base, "-", "_")
}

// ParseModuleIndex reads modules.dep, modules.builtin, modules.softdep and
// modules.alias (any of the last three may be nil).
func ParseModuleIndex(dep, builtin, softdep, alias io.Reader) (*ModuleIndex, error) {
	ix := &ModuleIndex{
		deps:    map[string][]string{},
		byName:  map[string]string{},
		builtin: map[string]bool{},
		softPre: map[string][]string{},
		aliases: map[string][]string{},
	}
	if err := eachLine(dep, func(line string) error {
		mod, rest, ok := strings.Cut(line, ":")
		if !ok {
			return fmt.Errorf("modules.dep line %q has no colon", line)
		}
		mod = strings.TrimSpace(mod)
		ix.deps[mod] = strings.Fields(rest)
		ix.byName[moduleName(mod)] = mod
		return nil
	}); err != nil {
		return nil, err
	}
	if err := eachLine(builtin, func(line string) error {
		ix.builtin[moduleName(line)] = true
		return nil
	}); err != nil {
		return nil, err
	}
	if err := eachLine(softdep, func(line string) error {
		// "softdep libcrc32c pre: crc32c post: foo"
		f := strings.Fields(line)
		if len(f) < 2 || f[0] != "softdep" {
			return nil
		}
		mod, pre := strings.ReplaceAll(f[1], "-", "_"), false
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				pre = true
			case "post:":
				pre = false
			default:
				if pre {
					ix.softPre[mod] = append(ix.softPre[mod], w)
				}
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	if err := eachLine(alias, func(line string) error {
		f := strings.Fields(line)
		if len(f) != 3 || f[0] != "alias" || strings.ContainsAny(f[1], "*?[") {
			return nil
		}
		ix.aliases[f[1]] = append(ix.aliases[f[1]], strings.ReplaceAll(f[2], "-", "_"))
		return nil
	}); err != nil {
		return nil, err
	}
	if len(ix.deps) == 0 {
		return nil, fmt.Errorf("modules.dep is empty: run depmod -b <root> <version> first")
	}
	return ix, nil
}

func eachLine(r io.Reader, fn func(string) error) error {
	if r == nil {
		return nil
	}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if err := fn(line); err != nil {
			return err
		}
	}
	return sc.Err()
}

// Resolve orders the requested modules and everything they need so that each
// module comes after its dependencies, with soft "pre" dependencies (resolved
// through aliases) before the module that wants them: libcrc32c's "pre: crc32c"
// is what makes crc32c_generic load before ip_vs's dependency chain, which
// otherwise fails with "Unknown symbol". Built-in modules are left out. It
// returns the load list and the requested IfPresent names this kernel lacks.
func (ix *ModuleIndex) Resolve(reqs []ModuleRequest) (mods []Module, absent []string, err error) {
	seen := map[string]int{} // path -> index in mods
	var visit func(p string, optional bool, stack []string) error
	visit = func(p string, optional bool, stack []string) error {
		if i, ok := seen[p]; ok {
			if !optional {
				mods[i].Optional = false
			}
			return nil
		}
		for _, s := range stack {
			if s == p {
				return fmt.Errorf("modules.dep has a dependency cycle through %s", p)
			}
		}
		stack = append(stack, p)
		name := moduleName(p)
		for _, soft := range ix.softPre[name] {
			for _, target := range ix.expandAlias(soft) {
				if tp, ok := ix.byName[target]; ok {
					if err := visit(tp, true, stack); err != nil {
						return err
					}
				}
			}
		}
		deps, ok := ix.deps[p]
		if !ok {
			return fmt.Errorf("modules.dep does not list %s", p)
		}
		// modules.dep lists the modules needed last first, as modprobe loads
		// them from the end of the line.
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visit(deps[i], optional, stack); err != nil {
				return err
			}
		}
		if _, ok := seen[p]; !ok { // a soft dependency may have pulled it in
			seen[p] = len(mods)
			mods = append(mods, Module{Name: name, Path: p, Optional: optional})
		}
		return nil
	}
	for _, r := range reqs {
		name := strings.ReplaceAll(r.Name, "-", "_")
		if ix.builtin[name] {
			continue
		}
		p, ok := ix.byName[name]
		if !ok {
			if r.IfPresent {
				absent = append(absent, name)
				continue
			}
			return nil, nil, fmt.Errorf("kernel has no module %q (neither in modules.dep nor built in)", name)
		}
		if err := visit(p, false, nil); err != nil {
			return nil, nil, err
		}
	}
	return mods, absent, nil
}

// expandAlias returns the module names an alias (or plain name) stands for.
func (ix *ModuleIndex) expandAlias(nameOrAlias string) []string {
	n := strings.ReplaceAll(nameOrAlias, "-", "_")
	if _, ok := ix.byName[n]; ok {
		return []string{n}
	}
	return ix.aliases[nameOrAlias]
}

// DefaultModules is what every VM loads: the 9p root and the output port, IPVS
// with every scheduler this kernel has, conntrack, and the link types the lab
// and the tests create (veth, dummy, bridge, IP-in-IP for LVS-TUN).
func DefaultModules() []ModuleRequest {
	reqs := []ModuleRequest{
		{Name: "virtio_pci"}, {Name: "9pnet_virtio"}, {Name: "9p"}, {Name: "overlay"},
		{Name: "virtio_console"}, {Name: "virtio_rng", IfPresent: true},
		{Name: "crc32c_generic"}, {Name: "nf_conntrack"}, {Name: "ip_vs"},
	}
	for _, s := range []string{"rr", "wrr", "lc", "wlc", "lblc", "lblcr", "dh", "sh", "sed", "nq", "fo", "ovf", "mh", "twos"} {
		reqs = append(reqs, ModuleRequest{Name: "ip_vs_" + s, IfPresent: true})
	}
	for _, m := range []string{"veth", "dummy", "bridge", "tunnel4", "ipip", "ip6_tunnel"} {
		reqs = append(reqs, ModuleRequest{Name: m})
	}
	return reqs
}
