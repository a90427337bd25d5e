//go:build !vm

package main

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// startRemoteBackends creates a network namespace whose 10.0.0.0/8 is routed
// into a tun device, answered by the responder (this binary, see TestMain),
// and returns the namespace's name. Everything is removed when b ends.
func startRemoteBackends(b *testing.B) string {
	ns := fmt.Sprintf("adfp%d", os.Getpid())
	ip := func(args ...string) {
		b.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			b.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("netns", "add", ns)
	b.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	ip("-n", ns, "link", "set", "lo", "up")

	resp := exec.Command("ip", "netns", "exec", ns, os.Args[0])
	resp.Env = append(os.Environ(), "FOOTPRINT_RESPONDER=adfp0")
	resp.Stderr = os.Stderr
	out, err := resp.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := resp.Start(); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { resp.Process.Kill(); resp.Wait() })
	ready := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		ready <- line
		io.Copy(io.Discard, out)
	}()
	select {
	case line := <-ready:
		if line != "ready\n" {
			b.Fatalf("responder did not start: %q", line)
		}
	case <-time.After(5 * time.Second):
		b.Fatal("responder did not start within 5s")
	}
	ip("-n", ns, "addr", "add", "198.18.0.1/32", "dev", "adfp0")
	ip("-n", ns, "link", "set", "adfp0", "up")
	ip("-n", ns, "route", "add", "10.0.0.0/8", "dev", "adfp0", "src", "198.18.0.1")
	return ns
}

// backendsUp fails b unless the daemon behind sock reports every backend up,
// and returns the probes they completed so far.
func backendsUp(b *testing.B, sock string) uint64 {
	b.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := directorv1.NewDirectorClient(conn).GetStatus(ctx, &directorv1.GetStatusRequest{})
	if err != nil {
		b.Fatalf("GetStatus: %v", err)
	}
	var probes uint64
	total, up := 0, 0
	for _, s := range st.GetServices() {
		for _, be := range s.GetBackends() {
			total++
			if be.GetHealth().GetState() == directorv1.HealthState_HEALTH_STATE_UP {
				up++
			}
			probes += be.GetHealth().GetProbes()
		}
	}
	if total != 10000 || up != total {
		b.Fatalf("%d of %d backends up, want all 10000: the measurement would not be of passing checks", up, total)
	}
	return probes
}

// respond creates the tun device name and answers every TCP SYN that arrives
// on it with a SYN-ACK, as a remote server's kernel would; the daemon's ACK
// and reset need no answer. It writes "ready" to w once the device exists,
// then runs until killed.
func respond(name string, w io.Writer) error {
	fd, err := syscall.Open("/dev/net/tun", syscall.O_RDWR|syscall.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	var ifr [40]byte // struct ifreq: name, then flags
	copy(ifr[:15], name)
	binary.NativeEndian.PutUint16(ifr[16:], syscall.IFF_TUN|syscall.IFF_NO_PI)
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.TUNSETIFF, uintptr(unsafe.Pointer(&ifr[0]))); e != 0 {
		return fmt.Errorf("TUNSETIFF %s: %w", name, e)
	}
	fmt.Fprintln(w, "ready")
	in := make([]byte, 2048)
	for {
		n, err := syscall.Read(fd, in)
		if err != nil {
			return err
		}
		if out := synAck(in[:n]); out != nil {
			if _, err := syscall.Write(fd, out); err != nil {
				return err
			}
		}
	}
}

// synAck returns the SYN-ACK answering pkt when it is an IPv4 TCP SYN, else nil.
func synAck(pkt []byte) []byte {
	if len(pkt) < 20 || pkt[0]>>4 != 4 || pkt[9] != syscall.IPPROTO_TCP {
		return nil
	}
	ihl := int(pkt[0]&15) * 4
	if len(pkt) < ihl+20 {
		return nil
	}
	syn := pkt[ihl:]
	if syn[13]&0x3f != 0x02 { // SYN alone
		return nil
	}
	out := make([]byte, 40)
	out[0], out[8], out[9] = 0x45, 64, syscall.IPPROTO_TCP
	binary.BigEndian.PutUint16(out[2:], 40)
	binary.BigEndian.PutUint16(out[6:], 0x4000) // don't fragment
	copy(out[12:16], pkt[16:20])                // from the address it was sent to
	copy(out[16:20], pkt[12:16])
	binary.BigEndian.PutUint16(out[10:], checksum(out[:20], 0))
	tcp := out[20:]
	copy(tcp[0:2], syn[2:4])
	copy(tcp[2:4], syn[0:2])
	binary.BigEndian.PutUint32(tcp[4:], 0x5eed0000)
	binary.BigEndian.PutUint32(tcp[8:], binary.BigEndian.Uint32(syn[4:])+1)
	tcp[12], tcp[13] = 5<<4, 0x12 // 20-byte header; SYN, ACK
	binary.BigEndian.PutUint16(tcp[14:], 65535)
	pseudo := uint32(binary.BigEndian.Uint16(out[12:])) + uint32(binary.BigEndian.Uint16(out[14:])) +
		uint32(binary.BigEndian.Uint16(out[16:])) + uint32(binary.BigEndian.Uint16(out[18:])) +
		syscall.IPPROTO_TCP + 20
	binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudo))
	return out
}

// checksum is the Internet checksum of b, starting from sum.
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
