package vm

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestQEMUArgs(t *testing.T) {
	got := qemuArgs(qemuConfig{
		Kernel: "/c/vmlinux", Initrd: "/c/initrd.gz", Memory: 1536, CPUs: 2,
		CtlDir: "/tmp/r/ctl", OutSock: "/tmp/r/out.sock", LPJ: 1000,
		Shares: []Share{{Host: "/h/out,put", Guest: "/g"}, {Host: "/h/in", ReadOnly: true}},
	})
	want := []string{
		"-name", "vmrunner", "-nodefaults", "-no-user-config", "-accel", "tcg",
		"-m", "1536", "-smp", "2", "-display", "none", "-serial", "stdio", "-no-reboot",
		"-kernel", "/c/vmlinux", "-initrd", "/c/initrd.gz",
		"-append", "console=ttyS0 quiet panic=-1 rdinit=/init tsc=reliable lpj=1000",
		"-device", "virtio-rng-pci",
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=out,path=/tmp/r/out.sock",
		"-device", "virtserialport,bus=vser.0,chardev=out,name=vmrunner.out",
		"-virtfs", "local,path=/,mount_tag=host,security_model=none,multidevs=remap,readonly=on",
		"-virtfs", "local,path=/tmp/r/ctl,mount_tag=ctl,security_model=none,multidevs=remap",
		"-virtfs", "local,path=/h/out,,put,mount_tag=share0,security_model=none,multidevs=remap",
		"-virtfs", "local,path=/h/in,mount_tag=share1,security_model=none,multidevs=remap,readonly=on",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("qemuArgs (-want +got):\n%s", diff)
	}
	for _, a := range got {
		if strings.Contains(a, "kvm") {
			t.Errorf("argument %q asks for KVM: it hangs on these machines", a)
		}
	}
}

func TestQEMUArgsFirmwareAndNoLPJ(t *testing.T) {
	got := strings.Join(qemuArgs(qemuConfig{Firmware: "/fw.rom", Memory: 1, CPUs: 1}), " ")
	if !strings.Contains(got, "-bios /fw.rom") {
		t.Errorf("args %q lack -bios", got)
	}
	if strings.Contains(got, "lpj=") {
		t.Errorf("args %q preset lpj although it is unknown", got)
	}
}

// TestEndScannerAnyChunking feeds output plus marker split at every possible
// position: the program's bytes must come through exactly, the marker never.
func TestEndScannerAnyChunking(t *testing.T) {
	const nonce = "0123abcd"
	payloads := []string{"", "hello\n", "no newline", "\x1e", "\x1eVMRUNNER-EN", "\x1eVMRUNNER-END wrongnonce 1\n"}
	for _, payload := range payloads {
		stream := payload + markerEnd + nonce + " 42\n" + "late daemon output\n"
		for cut1 := 0; cut1 <= len(stream); cut1++ {
			for _, cut2 := range []int{cut1, (cut1 + len(stream)) / 2, len(stream)} {
				var got bytes.Buffer
				status, ends := -1, 0
				sc := newEndScanner(nonce, func(p []byte) { got.Write(p) }, func(st int) { status = st; ends++ })
				sc.Write([]byte(stream[:cut1]))
				sc.Write([]byte(stream[cut1:cut2]))
				sc.Write([]byte(stream[cut2:]))
				sc.Flush()
				if got.String() != payload || status != 42 || ends != 1 {
					t.Fatalf("payload %q cut %d/%d: output %q status %d ends %d", payload, cut1, cut2, got.String(), status, ends)
				}
			}
		}
	}
}

func TestEndScannerWithoutMarkerFlushesEverything(t *testing.T) {
	var got bytes.Buffer
	called := false
	sc := newEndScanner("n", func(p []byte) { got.Write(p) }, func(int) { called = true })
	sc.Write([]byte("partial \x1eVMRUNNER-EN"))
	if strings.Contains(got.String(), "\x1e") {
		t.Fatalf("a possible marker start was emitted early: %q", got.String())
	}
	sc.Flush()
	if got.String() != "partial \x1eVMRUNNER-EN" || called {
		t.Fatalf("after Flush: %q, onEnd called %v", got.String(), called)
	}
}

func TestConsoleLogFindsMarkers(t *testing.T) {
	ready := 0
	var live bytes.Buffer
	c := &consoleLog{onReady: func() { ready++ }, live: func(p []byte) { live.Write(p) }}
	for _, chunk := range []string{"[ 1.0] boot\r\n", "VMRUNNER-RE", "ADY 3.1\r\n", "VMRUNNER-FAIL module ip_vs: no\r\n", "last"} {
		c.Write([]byte(chunk))
	}
	if ready != 1 {
		t.Errorf("ready seen %d times, want 1", ready)
	}
	if diff := cmp.Diff([]string{"module ip_vs: no"}, c.failLines); diff != "" {
		t.Errorf("fail lines (-want +got):\n%s", diff)
	}
	if strings.Contains(live.String(), "\r") || strings.Contains(c.buf.String(), "\r") {
		t.Errorf("carriage returns were kept")
	}
	if got, want := c.tail(2), "VMRUNNER-FAIL module ip_vs: no\nlast"; got != want {
		t.Errorf("tail = %q, want %q", got, want)
	}
}
