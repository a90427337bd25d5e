package vm

import (
	"bytes"
	"compress/gzip"
	"context"
	"debug/elf"
	"encoding/binary"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeKernel builds a minimal x86-64 ELF whose only program header is a note
// segment holding one note of the given name and type.
func fakeKernel(t *testing.T, noteName string, noteType uint32) []byte {
	t.Helper()
	var note bytes.Buffer
	name := append([]byte(noteName), 0)
	binary.Write(&note, binary.LittleEndian, [3]uint32{uint32(len(name)), 4, noteType})
	note.Write(name)
	for note.Len()%4 != 0 {
		note.WriteByte(0)
	}
	note.Write([]byte{0, 0, 0, 1})
	hdr := elf.Header64{
		Type: uint16(elf.ET_EXEC), Machine: uint16(elf.EM_X86_64), Version: uint32(elf.EV_CURRENT),
		Phoff: 64, Ehsize: 64, Phentsize: 56, Phnum: 1, Shentsize: 64,
	}
	copy(hdr.Ident[:], []byte{0x7f, 'E', 'L', 'F', byte(elf.ELFCLASS64), byte(elf.ELFDATA2LSB), byte(elf.EV_CURRENT)})
	prog := elf.Prog64{Type: uint32(elf.PT_NOTE), Flags: uint32(elf.PF_R), Off: 120,
		Filesz: uint64(note.Len()), Memsz: uint64(note.Len()), Align: 4}
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, hdr)
	binary.Write(&b, binary.LittleEndian, prog)
	b.Write(note.Bytes())
	return b.Bytes()
}

func TestCheckPVH(t *testing.T) {
	if err := checkPVH(fakeKernel(t, "Xen", xenElfnotePhys32Entry)); err != nil {
		t.Errorf("kernel with the PVH note rejected: %v", err)
	}
	if err := checkPVH(fakeKernel(t, "Xen", 6)); err == nil {
		t.Errorf("kernel with only other Xen notes accepted")
	}
	if err := checkPVH(fakeKernel(t, "GNU", xenElfnotePhys32Entry)); err == nil {
		t.Errorf("kernel with a non-Xen note of type 18 accepted")
	}
	if err := checkPVH([]byte("not an elf")); err == nil {
		t.Errorf("garbage accepted")
	}
}

// TestExtractVmlinuxFindsGzipPayload hides a gzip-compressed kernel after a
// false magic and before trailing bytes, as a bzImage does.
func TestExtractVmlinuxFindsGzipPayload(t *testing.T) {
	kernel := fakeKernel(t, "Xen", xenElfnotePhys32Entry)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(kernel)
	zw.Close()
	bz := append([]byte("setup code \x1f\x8b\x08 false start "), z.Bytes()...)
	bz = append(bz, "trailer bytes"...)
	got, err := extractVmlinux(context.Background(), bz)
	if err != nil {
		t.Fatalf("extractVmlinux: %v", err)
	}
	if !bytes.Equal(got, kernel) {
		t.Errorf("extracted %d bytes, want the %d-byte kernel", len(got), len(kernel))
	}
	if _, err := extractVmlinux(context.Background(), []byte("no payload here")); err == nil {
		t.Errorf("extractVmlinux found a kernel in plain text")
	}
}

func TestBootableKernelFallsBackOnce(t *testing.T) {
	dir := t.TempDir()
	vmlinuz := filepath.Join(dir, "vmlinuz")
	os.WriteFile(vmlinuz, []byte("not a bzImage"), 0o644)
	if got := bootableKernel(context.Background(), vmlinuz, nil); got != vmlinuz {
		t.Fatalf("bootableKernel = %s, want the vmlinuz fallback", got)
	}
	if _, err := os.Stat(filepath.Join(dir, "vmlinux.none")); err != nil {
		t.Fatalf("failure not remembered: %v", err)
	}
	os.WriteFile(filepath.Join(dir, "vmlinux"), []byte("x"), 0o644)
	if got := bootableKernel(context.Background(), vmlinuz, nil); got != filepath.Join(dir, "vmlinux") {
		t.Errorf("bootableKernel = %s, want the existing vmlinux", got)
	}
}

func TestPresetLPJ(t *testing.T) {
	cpuinfo := []byte("processor\t: 0\nmodel name\t: x\ncpu MHz\t\t: 2594.638\n\nprocessor\t: 1\ncpu MHz\t\t: 9999.0\n")
	tests := []struct {
		name    string
		cpuinfo []byte
		hz      int
		want    int
	}{
		{"Debian HZ=250", cpuinfo, 250, 10378552},
		{"HZ unknown", cpuinfo, 0, 0},
		{"no MHz line", []byte("processor: 0\n"), 250, 0},
		{"garbage MHz", []byte("cpu MHz : fast\n"), 250, 0},
	}
	for _, tc := range tests {
		if got := presetLPJ(tc.cpuinfo, tc.hz); got != tc.want {
			t.Errorf("%s: presetLPJ = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestKernelHZ(t *testing.T) {
	p := filepath.Join(t.TempDir(), "config")
	os.WriteFile(p, []byte(strings.Join([]string{"CONFIG_HZ_250=y", "CONFIG_HZ=250", "CONFIG_X=y"}, "\n")), 0o644)
	if got := kernelHZ(p); got != 250 {
		t.Errorf("kernelHZ = %d, want 250", got)
	}
	if got := kernelHZ(filepath.Join(t.TempDir(), "missing")); got != 0 {
		t.Errorf("kernelHZ(missing) = %d, want 0", got)
	}
}
