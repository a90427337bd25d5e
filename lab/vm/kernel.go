package vm

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// bootableKernel returns the vmlinux next to vmlinuz, extracting it on first
// use, or vmlinuz itself when the kernel cannot be started through PVH. Under
// TCG the bzImage's own decompressor is slow; the ELF with a PVH note is
// loaded by qemu directly. A failed extraction is remembered (vmlinux.none) so
// it is tried once per kernel.
func bootableKernel(ctx context.Context, vmlinuz string, log *slog.Logger) string {
	log = discardLogger(log)
	dir := filepath.Dir(vmlinuz)
	vmlinux, none := filepath.Join(dir, "vmlinux"), filepath.Join(dir, "vmlinux.none")
	if fileExists(vmlinux) {
		return vmlinux
	}
	if fileExists(none) {
		return vmlinuz
	}
	bz, err := os.ReadFile(vmlinuz)
	if err == nil {
		var elfData []byte
		if elfData, err = extractVmlinux(ctx, bz); err == nil {
			err = writeFileAtomic(vmlinux, elfData)
		}
	}
	if err != nil {
		log.Info("booting the compressed kernel (slower)", "reason", err)
		os.WriteFile(none, []byte(err.Error()+"\n"), 0o644)
		return vmlinuz
	}
	return vmlinux
}

// compression is a bzImage payload format, known by its magic bytes.
type compression struct {
	magic []byte
	tool  []string // external decompressor reading stdin; nil means Go's gzip
}

// compressions are the payload formats Debian kernels use.
func compressions() []compression {
	return []compression{
		{[]byte{0xfd, '7', 'z', 'X', 'Z', 0x00}, []string{"xz", "-dc", "--single-stream"}},
		{[]byte{0x28, 0xb5, 0x2f, 0xfd}, []string{"zstd", "-dc"}},
		{[]byte{0x1f, 0x8b, 0x08}, nil},
	}
}

// extractVmlinux finds the compressed ELF kernel inside a bzImage and returns
// it if it has a PVH entry point.
func extractVmlinux(ctx context.Context, bz []byte) ([]byte, error) {
	var errs []string
	for _, c := range compressions() {
		for off := 0; ; {
			i := bytes.Index(bz[off:], c.magic)
			if i < 0 {
				break
			}
			off += i
			out, err := decompress(ctx, bz[off:], c.tool)
			off++
			if err != nil || len(out) < 4 || string(out[:4]) != "\x7fELF" {
				if err != nil {
					errs = append(errs, err.Error())
				}
				continue
			}
			if err := checkPVH(out); err != nil {
				return nil, err
			}
			return out, nil
		}
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("no ELF kernel found in the bzImage (%s)", strings.Join(errs, "; "))
	}
	return nil, fmt.Errorf("no ELF kernel found in the bzImage")
}

func decompress(ctx context.Context, data []byte, tool []string) ([]byte, error) {
	if tool == nil {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, err
		}
		zr.Multistream(false)
		var b bytes.Buffer
		if _, err := io.Copy(&b, zr); err != nil && b.Len() == 0 {
			return nil, err
		}
		return b.Bytes(), nil
	}
	cmd := exec.CommandContext(ctx, tool[0], tool[1:]...)
	cmd.Stdin = bytes.NewReader(data)
	var out bytes.Buffer
	cmd.Stdout = &out
	err := cmd.Run()
	// Trailing bytes after the stream make some tools exit non-zero after a
	// complete output; the ELF check decides.
	if out.Len() == 0 && err != nil {
		return nil, fmt.Errorf("%s: %v", tool[0], err)
	}
	return out.Bytes(), nil
}

// xenElfnotePhys32Entry is the ELF note type of the PVH 32-bit entry point.
const xenElfnotePhys32Entry = 18

// checkPVH verifies that the ELF has the "Xen" PHYS32_ENTRY note qemu needs
// to start it without a bootloader.
func checkPVH(data []byte) error {
	f, err := elf.NewFile(bytes.NewReader(data))
	if err != nil {
		return fmt.Errorf("extracted kernel is not ELF: %w", err)
	}
	defer f.Close()
	for _, p := range f.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(p.Open())
		if err != nil {
			return err
		}
		for len(notes) >= 12 {
			namesz := binary.LittleEndian.Uint32(notes[0:])
			descsz := binary.LittleEndian.Uint32(notes[4:])
			typ := binary.LittleEndian.Uint32(notes[8:])
			nameEnd := 12 + align4(namesz)
			next := nameEnd + align4(descsz)
			if next > uint32(len(notes)) {
				break
			}
			name := strings.TrimRight(string(notes[12:12+namesz]), "\x00")
			if name == "Xen" && typ == xenElfnotePhys32Entry {
				return nil
			}
			notes = notes[next:]
		}
	}
	return fmt.Errorf("kernel has no PVH entry note (CONFIG_PVH unset)")
}

func align4(n uint32) uint32 { return (n + 3) &^ 3 }

// kernelHZ reads CONFIG_HZ from the kernel's config file, 0 if unknown.
func kernelHZ(configPath string) int {
	f, err := os.Open(configPath)
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CONFIG_HZ="); ok {
			hz, _ := strconv.Atoi(v)
			return hz
		}
	}
	return 0
}

// presetLPJ computes loops-per-jiffy from the host's CPU clock (the emulated
// TSC runs at the host's rate) so that the guest skips calibrating each
// secondary CPU, which takes about 0.4 s under TCG. 0 means unknown.
func presetLPJ(cpuinfo []byte, hz int) int {
	if hz <= 0 {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(cpuinfo))
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(k) != "cpu MHz" {
			continue
		}
		mhz, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
		if err != nil || mhz <= 0 {
			return 0
		}
		return int(mhz * 1e6 / float64(hz))
	}
	return 0
}
