package vm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"
)

// AssetOptions choose what the VM boots. The zero value fetches the kernel
// that Debian's linux-image-amd64 currently depends on.
type AssetOptions struct {
	// CacheDir holds downloaded packages, kernels and initramfs images
	// (default: DefaultCacheDir()).
	CacheDir string
	// KernelPackage pins a package such as linux-image-6.1.0-56-amd64
	// (default: the one linux-image-amd64 depends on).
	KernelPackage string
	// Modules are loaded at boot, in dependency order (default:
	// DefaultModules()). Extra modules give another cached initramfs.
	Modules []ModuleRequest
	// Busybox is a statically linked busybox, the initramfs' only program
	// (default /bin/busybox from busybox-static).
	Busybox string
	// Logger gets progress at Info (default: discard).
	Logger *slog.Logger
}

// Assets are the files one VM boots from.
type Assets struct {
	KernelVersion string // for example 6.1.0-56-amd64
	// Kernel is the uncompressed vmlinux when the kernel has a PVH entry
	// point (qemu then starts it directly, which saves the emulated
	// decompression: about 2.5 s a boot), else the vmlinuz.
	Kernel string
	// HZ is the kernel's timer frequency, used to preset loops-per-jiffy.
	HZ      int
	Initrd  string   // path of the initramfs (cpio, gzip)
	Modules []Module // what /init loads, in order
	// Absent are requested IfPresent modules this kernel does not have.
	Absent []string
	// Built is true when this call downloaded or built something (a cold cache).
	Built bool
}

// manifest is stored next to each initramfs so that a warm start needs
// neither the package nor depmod.
type manifest struct {
	Package string   `json:"package"`
	HZ      int      `json:"hz"`
	Modules []Module `json:"modules"`
	Absent  []string `json:"absent,omitempty"`
}

// DefaultCacheDir is $VM_CACHE_DIR, else lab/.cache/vm in the enclosing Go
// module (found from the working directory, so tests running in a package
// folder share it), else the user's cache folder.
func DefaultCacheDir() string {
	if d := os.Getenv("VM_CACHE_DIR"); d != "" {
		return d
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
				return filepath.Join(d, "lab", ".cache", "vm")
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	if d, err := os.UserCacheDir(); err == nil {
		return filepath.Join(d, "anycast-director", "vm")
	}
	return filepath.Join(os.TempDir(), "anycast-director-vm")
}

// Prepare makes sure the kernel and an initramfs with the requested modules
// are in the cache, fetching and building them on a fresh machine: apt-get
// download of the kernel package (after apt-get update if the package lists
// are missing or stale), dpkg-deb -x, depmod -b, module resolution and a cpio
// archive with busybox as /init. Concurrent callers wait on a lock file.
func Prepare(ctx context.Context, o AssetOptions) (Assets, error) {
	log := discardLogger(o.Logger)
	if o.CacheDir == "" {
		o.CacheDir = DefaultCacheDir()
	}
	if o.Modules == nil {
		o.Modules = DefaultModules()
	}
	if o.Busybox == "" {
		o.Busybox = "/bin/busybox"
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return Assets{}, fmt.Errorf("%w: create cache folder: %v", ErrAssets, err)
	}
	unlock, err := lockFile(ctx, filepath.Join(o.CacheDir, ".lock"))
	if err != nil {
		return Assets{}, fmt.Errorf("%w: %v", ErrAssets, err)
	}
	defer unlock()

	a, err := prepareLocked(ctx, o, log)
	if err != nil {
		return Assets{}, fmt.Errorf("%w: %v", ErrAssets, err)
	}
	return a, nil
}

func prepareLocked(ctx context.Context, o AssetOptions, log *slog.Logger) (Assets, error) {
	busybox, err := checkBusybox(o.Busybox)
	if err != nil {
		return Assets{}, err
	}
	pkg := o.KernelPackage
	if pkg == "" {
		if pkg, err = currentKernelPackage(ctx, o.CacheDir, log); err != nil {
			cached := newestCachedKernel(o.CacheDir)
			if cached == "" {
				return Assets{}, err
			}
			log.Warn("cannot ask apt for the current kernel; using the cached one", "kernel", cached, "err", err)
			pkg = "linux-image-" + cached
		}
	}
	a, err := prepareKernel(ctx, o, pkg, busybox, log)
	var dl *downloadError
	if !errors.As(err, &dl) {
		return a, err
	}
	// Stale package lists name a version the registry no longer has:
	// update them once, ask again which kernel is current, and retry.
	log.Info("download failed; running apt-get update and retrying", "reason", err)
	if uerr := aptUpdate(ctx); uerr != nil {
		return Assets{}, fmt.Errorf("%v; and %w", err, uerr)
	}
	if o.KernelPackage == "" {
		if pkg, err = resolveKernelPackage(ctx, log); err != nil {
			return Assets{}, err
		}
		rememberKernelPackage(o.CacheDir, pkg)
	}
	a, err = prepareKernel(ctx, o, pkg, busybox, log)
	if errors.As(err, &dl) {
		return Assets{}, fmt.Errorf("%v (after apt-get update; check apt-cache depends linux-image-amd64 or pin AssetOptions.KernelPackage)", err)
	}
	return a, err
}

// downloadError marks a failed apt-get download, which an apt-get update may fix.
type downloadError struct{ err error }

func (e *downloadError) Error() string { return e.err.Error() }
func (e *downloadError) Unwrap() error { return e.err }

// prepareKernel makes the assets of one kernel package.
func prepareKernel(ctx context.Context, o AssetOptions, pkg string, busybox []byte, log *slog.Logger) (Assets, error) {
	kver := strings.TrimPrefix(pkg, "linux-image-")
	if kver == pkg || kver == "" || strings.ContainsAny(kver, "/ ") {
		return Assets{}, fmt.Errorf("kernel package %q is not named linux-image-<version>", pkg)
	}
	kdir := filepath.Join(o.CacheDir, kver)
	key := initrdKey(kver, o.Modules, busybox)
	vmlinuz := filepath.Join(kdir, "vmlinuz")
	a := Assets{
		KernelVersion: kver,
		Initrd:        filepath.Join(kdir, "initrd-"+key+".cpio.gz"),
	}
	manifestPath := filepath.Join(kdir, "initrd-"+key+".json")
	if m, err := readManifest(manifestPath); err == nil && fileExists(vmlinuz) && fileExists(a.Initrd) {
		a.Modules, a.Absent, a.HZ = m.Modules, m.Absent, m.HZ
		a.Kernel = bootableKernel(ctx, vmlinuz, log)
		touch(vmlinuz, a.Kernel, a.Initrd, manifestPath)
		return a, nil
	}

	start := time.Now()
	deb, err := fetchKernelDeb(ctx, filepath.Join(o.CacheDir, "debs"), pkg, log)
	if err != nil {
		return Assets{}, err
	}
	tmp, err := os.MkdirTemp(o.CacheDir, "extract-")
	if err != nil {
		return Assets{}, err
	}
	defer os.RemoveAll(tmp)
	log.Info("extracting kernel package", "deb", filepath.Base(deb))
	if out, err := exec.CommandContext(ctx, "dpkg-deb", "-x", deb, tmp).CombinedOutput(); err != nil {
		return Assets{}, fmt.Errorf("dpkg-deb -x %s: %v: %s (is dpkg installed? is the file complete? delete it to re-download)", deb, err, bytes.TrimSpace(out))
	}
	modRoot := filepath.Join(tmp, "lib", "modules", kver)
	if !fileExists(modRoot) {
		return Assets{}, fmt.Errorf("package %s has no lib/modules/%s", deb, kver)
	}
	depmod, err := exec.LookPath("depmod")
	if err != nil {
		if depmod, err = exec.LookPath("/usr/sbin/depmod"); err != nil {
			return Assets{}, fmt.Errorf("depmod not found: install kmod")
		}
	}
	if out, err := exec.CommandContext(ctx, depmod, "-b", tmp, kver).CombinedOutput(); err != nil {
		return Assets{}, fmt.Errorf("depmod -b %s %s: %v: %s", tmp, kver, err, bytes.TrimSpace(out))
	}
	ix, err := readModuleIndex(modRoot)
	if err != nil {
		return Assets{}, err
	}
	mods, absent, err := ix.Resolve(o.Modules)
	if err != nil {
		return Assets{}, fmt.Errorf("kernel %s: %w", kver, err)
	}
	if err := os.MkdirAll(kdir, 0o755); err != nil {
		return Assets{}, err
	}
	if err := copyFile(filepath.Join(tmp, "boot", "vmlinuz-"+kver), vmlinuz); err != nil {
		return Assets{}, fmt.Errorf("kernel image: %w", err)
	}
	a.Kernel = bootableKernel(ctx, vmlinuz, log)
	a.HZ = kernelHZ(filepath.Join(tmp, "boot", "config-"+kver))
	if err := buildInitrd(a.Initrd, busybox, modRoot, kver, mods); err != nil {
		return Assets{}, err
	}
	mj, err := json.MarshalIndent(manifest{Package: pkg, HZ: a.HZ, Modules: mods, Absent: absent}, "", "  ")
	if err != nil {
		return Assets{}, err
	}
	if err := writeFileAtomic(manifestPath, mj); err != nil {
		return Assets{}, err
	}
	log.Info("built VM initramfs", "kernel", kver, "modules", len(mods), "took", time.Since(start).Round(time.Millisecond))
	touch(deb)
	keep := map[string]bool{kdir: true, a.Initrd: true, manifestPath: true, deb: true}
	for _, p := range pruneCache(o.CacheDir, keep, cacheMaxAge, time.Now()) {
		log.Info("removed unused VM cache entry", "path", p)
	}
	a.Modules, a.Absent, a.Built = mods, absent, true
	return a, nil
}

// initrdKey names the initramfs by what goes into it: kernel version, module
// requests, the /init template and busybox.
func initrdKey(kver string, reqs []ModuleRequest, busybox []byte) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n%s\n", kver, initTemplate)
	for _, r := range reqs {
		fmt.Fprintf(h, "%s %v\n", r.Name, r.IfPresent)
	}
	h.Write(busybox)
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// kernelAnswerTTL is how long apt's answer to "which kernel is current" is
// reused: asking costs about 0.4 s, a tenth of a warm run.
const kernelAnswerTTL = 6 * time.Hour

// currentKernelPackage is resolveKernelPackage, remembered in the cache for
// kernelAnswerTTL.
func currentKernelPackage(ctx context.Context, cacheDir string, log *slog.Logger) (string, error) {
	p := filepath.Join(cacheDir, "current-kernel")
	if st, err := os.Stat(p); err == nil && time.Since(st.ModTime()) < kernelAnswerTTL {
		if data, err := os.ReadFile(p); err == nil {
			if pkg := strings.TrimSpace(string(data)); strings.HasPrefix(pkg, "linux-image-") {
				return pkg, nil
			}
		}
	}
	pkg, err := resolveKernelPackage(ctx, log)
	if err != nil {
		return "", err
	}
	rememberKernelPackage(cacheDir, pkg)
	return pkg, nil
}

func rememberKernelPackage(cacheDir, pkg string) {
	writeFileAtomic(filepath.Join(cacheDir, "current-kernel"), []byte(pkg+"\n"))
}

// resolveKernelPackage asks apt which kernel linux-image-amd64 depends on,
// running apt-get update once if the lists do not know it.
func resolveKernelPackage(ctx context.Context, log *slog.Logger) (string, error) {
	ask := func() (string, error) {
		out, err := exec.CommandContext(ctx, "apt-cache", "depends", "linux-image-amd64").CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("apt-cache depends linux-image-amd64: %v: %s", err, bytes.TrimSpace(out))
		}
		return parseKernelDepends(out)
	}
	pkg, err := ask()
	if err == nil {
		return pkg, nil
	}
	log.Info("apt does not name a kernel yet; running apt-get update", "reason", err)
	if uerr := aptUpdate(ctx); uerr != nil {
		return "", fmt.Errorf("%v; and %w", err, uerr)
	}
	return ask()
}

// parseKernelDepends finds "Depends: linux-image-X" in apt-cache depends output.
func parseKernelDepends(out []byte) (string, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(strings.TrimLeft(strings.TrimSpace(sc.Text()), "|"))
		if len(f) == 2 && f[0] == "Depends:" && strings.HasPrefix(f[1], "linux-image-") {
			return f[1], nil
		}
	}
	return "", fmt.Errorf("apt-cache depends linux-image-amd64 names no linux-image-* package: %q", bytes.TrimSpace(out))
}

func aptUpdate(ctx context.Context) error {
	var last error
	for try := 0; try < 3; try++ { // another apt may hold the lists lock
		out, err := exec.CommandContext(ctx, "apt-get", "update", "-qq").CombinedOutput()
		if err == nil {
			return nil
		}
		last = fmt.Errorf("apt-get update: %v: %s (needs root and Debian's registry)", err, bytes.TrimSpace(out))
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Duration(try+1) * 2 * time.Second):
		}
	}
	return last
}

// fetchKernelDeb returns the cached .deb of pkg, downloading it with apt-get
// download; a failed download is a *downloadError.
func fetchKernelDeb(ctx context.Context, dir, pkg string, log *slog.Logger) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	find := func() string {
		m, _ := filepath.Glob(filepath.Join(dir, pkg+"_*.deb"))
		sort.Strings(m)
		if len(m) == 0 {
			return ""
		}
		return m[len(m)-1]
	}
	if deb := find(); deb != "" {
		return deb, nil
	}
	start := time.Now()
	log.Info("downloading kernel package", "package", pkg)
	cmd := exec.CommandContext(ctx, "apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", pkg)
	cmd.Dir = dir
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", &downloadError{fmt.Errorf("apt-get download %s: %v: %s", pkg, err, bytes.TrimSpace(out))}
	}
	log.Info("downloaded kernel package", "package", pkg, "took", time.Since(start).Round(time.Millisecond))
	if deb := find(); deb != "" {
		return deb, nil
	}
	return "", fmt.Errorf("apt-get download %s succeeded but left no %s_*.deb in %s", pkg, pkg, dir)
}

func newestCachedKernel(cacheDir string) string {
	m, _ := filepath.Glob(filepath.Join(cacheDir, "*", "vmlinuz"))
	sort.Strings(m)
	if len(m) == 0 {
		return ""
	}
	return filepath.Base(filepath.Dir(m[len(m)-1]))
}

func readModuleIndex(modRoot string) (*ModuleIndex, error) {
	var rs [4]io.Reader // nil interface for a missing optional file
	for i, n := range []string{"modules.dep", "modules.builtin", "modules.softdep", "modules.alias"} {
		data, err := os.ReadFile(filepath.Join(modRoot, n))
		if errors.Is(err, os.ErrNotExist) && i > 0 {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", n, err)
		}
		rs[i] = bytes.NewReader(data)
	}
	return ParseModuleIndex(rs[0], rs[1], rs[2], rs[3])
}

// checkBusybox reads busybox and refuses a dynamically linked one, which
// cannot run in an initramfs that has no C library.
func checkBusybox(p string) ([]byte, error) {
	data, err := os.ReadFile(p)
	if err != nil {
		return nil, fmt.Errorf("busybox: %v: install busybox-static", err)
	}
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("busybox %s is not an ELF binary: %v", p, err)
	}
	defer f.Close()
	for _, prog := range f.Progs {
		if prog.Type == elf.PT_INTERP {
			return nil, fmt.Errorf("busybox %s is dynamically linked: install busybox-static", p)
		}
	}
	return data, nil
}

// buildInitrd writes the gzip-compressed initramfs: /init, /bin/busybox, the
// modules under lib/modules/<kver>, and /dev/console for init's output.
func buildInitrd(dst string, busybox []byte, modRoot, kver string, mods []Module) error {
	entries := []archiveEntry{
		{Name: "init", Mode: modeFile | 0o755, Data: []byte(initScript(mods))},
		{Name: "bin/busybox", Mode: modeFile | 0o755, Data: busybox},
		{Name: "bin/sh", Mode: modeLink | 0o777, Data: []byte("busybox")},
		{Name: "dev/console", Mode: modeChar | 0o600, Major: 5, Minor: 1},
		{Name: "proc", Mode: modeDir | 0o755},
		{Name: "sys", Mode: modeDir | 0o755},
		{Name: "tmp", Mode: modeDir | 0o1777},
	}
	for _, m := range mods {
		data, err := readModuleFile(filepath.Join(modRoot, m.Path))
		if err != nil {
			return err
		}
		entries = append(entries, archiveEntry{Name: "lib/modules/" + m.Path, Mode: modeFile | 0o644, Data: data})
	}
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.BestSpeed)
	if err != nil {
		return err
	}
	if err := writeCpio(zw, entries); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	return writeFileAtomic(dst, buf.Bytes())
}

// readModuleFile returns a module uncompressed: busybox insmod may lack xz
// and zstd support, so compressed modules (newer Debian kernels) are
// decompressed on the host.
func readModuleFile(p string) ([]byte, error) {
	var tool string
	switch filepath.Ext(p) {
	case ".ko":
		return os.ReadFile(p)
	case ".xz":
		tool = "xz"
	case ".zst":
		tool = "zstd"
	case ".gz":
		f, err := os.Open(p)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		zr, err := gzip.NewReader(f)
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", p, err)
		}
		var b bytes.Buffer
		_, err = b.ReadFrom(zr)
		return b.Bytes(), err
	default:
		return nil, fmt.Errorf("module %s has an unknown extension", p)
	}
	out, err := exec.Command(tool, "-dc", p).Output()
	if err != nil {
		return nil, fmt.Errorf("decompress module %s with %s: %v (install %s)", p, tool, err, tool)
	}
	return out, nil
}

func readManifest(p string) (manifest, error) {
	var m manifest
	data, err := os.ReadFile(p)
	if err != nil {
		return m, err
	}
	err = json.Unmarshal(data, &m)
	return m, err
}
