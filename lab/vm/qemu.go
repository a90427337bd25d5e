package vm

import (
	"bytes"
	"fmt"
	"strconv"
	"strings"
)

// qemuConfig is everything the qemu command line depends on.
type qemuConfig struct {
	Kernel, Initrd string
	Memory, CPUs   int
	CtlDir         string  // host side of the control folder
	OutSock        string  // unix socket the output port connects to
	Shares         []Share // extra 9p folders, tagged share0, share1, ...
	Firmware       string  // -bios image; empty means qemu's default SeaBIOS
	LPJ            int     // preset loops-per-jiffy; 0 lets the guest calibrate
}

// kernelCmdline: console on the first serial port (qemu's stdout), quiet so
// that only warnings reach it, and any panic (for example /init dying) turns
// into a reboot, which -no-reboot turns into qemu exiting. The emulated TSCs
// all follow the host clock, so tsc=reliable keeps the cheap TSC clocksource
// instead of the HPET the guest would fall back to; lpj, when known, skips
// calibrating each extra CPU.
func kernelCmdline(lpj int) string {
	s := "console=ttyS0 quiet panic=-1 rdinit=/init tsc=reliable"
	if lpj > 0 {
		s += " lpj=" + strconv.Itoa(lpj)
	}
	return s
}

// qemuArgs builds the qemu command line. TCG only: on these machines /dev/kvm
// is a nested setup where the guest hangs (see shared/lab/NOTES.md).
func qemuArgs(c qemuConfig) []string {
	args := []string{
		"-name", "vmrunner",
		"-nodefaults", "-no-user-config",
		"-accel", "tcg",
		"-m", strconv.Itoa(c.Memory),
		"-smp", strconv.Itoa(c.CPUs),
		"-display", "none",
		"-serial", "stdio",
		"-no-reboot",
	}
	if c.Firmware != "" {
		args = append(args, "-bios", c.Firmware)
	}
	args = append(args,
		"-kernel", c.Kernel,
		"-initrd", c.Initrd,
		"-append", kernelCmdline(c.LPJ),
		"-device", "virtio-rng-pci",
		"-device", "virtio-serial-pci,id=vser",
		"-chardev", "socket,id=out,path="+qemuEscape(c.OutSock),
		"-device", "virtserialport,bus=vser.0,chardev=out,name="+outPortName,
		"-virtfs", virtfs("/", hostTag, true),
		"-virtfs", virtfs(c.CtlDir, ctlTag, false),
	)
	for i, s := range c.Shares {
		args = append(args, "-virtfs", virtfs(s.Host, sharedTagBase+strconv.Itoa(i), s.ReadOnly))
	}
	return args
}

// virtfs describes a 9p export. security_model=none makes guest root's files
// the host user's files; multidevs=remap keeps inode numbers unique across the
// host's mounts.
func virtfs(path, tag string, readOnly bool) string {
	s := fmt.Sprintf("local,path=%s,mount_tag=%s,security_model=none,multidevs=remap", qemuEscape(path), tag)
	if readOnly {
		s += ",readonly=on"
	}
	return s
}

// qemuEscape doubles commas, qemu's option separator.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// endScanner passes the program's output through until the end marker
// "\x1eVMRUNNER-END <nonce> <status>\n", which it removes and parses. Bytes
// that could be the start of the marker are held back until they are known not
// to be, so live output is never delayed by more than a partial marker.
type endScanner struct {
	marker  []byte
	out     func([]byte)
	onEnd   func(status int)
	pending []byte
	tail    []byte // after the marker, until the newline
	done    bool
	status  int
}

func newEndScanner(nonce string, out func([]byte), onEnd func(int)) *endScanner {
	return &endScanner{marker: []byte(markerEnd + nonce + " "), out: out, onEnd: onEnd, status: -1}
}

// Write never fails: the guest must not block on the host's bookkeeping.
func (e *endScanner) Write(p []byte) (int, error) {
	n := len(p)
	if e.done {
		return n, nil
	}
	if e.tail != nil {
		e.finish(p)
		return n, nil
	}
	e.pending = append(e.pending, p...)
	if i := bytes.Index(e.pending, e.marker); i >= 0 {
		if i > 0 {
			e.out(e.pending[:i])
		}
		rest := e.pending[i+len(e.marker):]
		e.pending = nil
		e.tail = []byte{}
		e.finish(rest)
		return n, nil
	}
	keep := partialPrefix(e.pending, e.marker)
	if emit := len(e.pending) - keep; emit > 0 {
		e.out(e.pending[:emit])
		e.pending = append(e.pending[:0:0], e.pending[emit:]...)
	}
	return n, nil
}

func (e *endScanner) finish(p []byte) {
	e.tail = append(e.tail, p...)
	line, _, ok := bytes.Cut(e.tail, []byte("\n"))
	if !ok {
		return
	}
	if st, err := strconv.Atoi(string(bytes.TrimSpace(line))); err == nil {
		e.status = st
	}
	e.done = true
	e.onEnd(e.status)
}

// Flush emits whatever was held back (the stream ended without a marker).
func (e *endScanner) Flush() {
	if !e.done && e.tail == nil && len(e.pending) > 0 {
		e.out(e.pending)
		e.pending = nil
	}
}

// partialPrefix is the length of the longest suffix of b that is a proper
// prefix of marker.
func partialPrefix(b, marker []byte) int {
	max := len(marker) - 1
	if len(b) < max {
		max = len(b)
	}
	for k := max; k > 0; k-- {
		if bytes.Equal(b[len(b)-k:], marker[:k]) {
			return k
		}
	}
	return 0
}

// consoleLog keeps the guest console, strips the serial line's CRs, forwards
// it live and notes the VMRUNNER lines that /init prints.
type consoleLog struct {
	live      func([]byte)
	onReady   func()
	buf       bytes.Buffer
	line      []byte
	failLines []string
}

const maxConsole = 4 << 20

func (c *consoleLog) Write(p []byte) (int, error) {
	clean := bytes.ReplaceAll(p, []byte("\r"), nil)
	if c.buf.Len() < maxConsole {
		c.buf.Write(clean)
	}
	if c.live != nil {
		c.live(clean)
	}
	c.line = append(c.line, clean...)
	for {
		l, rest, ok := bytes.Cut(c.line, []byte("\n"))
		if !ok {
			break
		}
		s := string(l)
		switch {
		case strings.HasPrefix(s, markerReady):
			if c.onReady != nil {
				c.onReady()
			}
		case strings.HasPrefix(s, markerFail+" "):
			c.failLines = append(c.failLines, strings.TrimPrefix(s, markerFail+" "))
		}
		c.line = append(c.line[:0:0], rest...)
	}
	return len(p), nil
}

// tail returns the last n lines of the console.
func (c *consoleLog) tail(n int) string {
	lines := strings.Split(strings.TrimRight(c.buf.String(), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
