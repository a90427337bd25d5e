package health

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"
)

// TCP flags of the forwarding check's segments.
const (
	flagSYN = 0x02
	flagRST = 0x04
	flagACK = 0x10
)

// segment is the forwarding check's TCP connection: this director's address
// and a random port towards the VIP and service port.
type segment struct {
	src, dst     netip.Addr
	sport, dport uint16
	seq          uint32
}

// newSegment picks the probe's port (in the kernel's default ephemeral
// range, where a real server expects clients) and initial sequence number.
func newSegment(src, vip netip.Addr, port uint16) segment {
	return segment{src: src, dst: vip, sport: uint16(32768 + rand.IntN(28232)), dport: port, seq: rand.Uint32()}
}

// packet builds an IPv4 packet with one TCP segment: flags, sequence number
// seq, acknowledgment ack (sent only with flagACK), and for a SYN the MSS
// option. TTL 1: the packet dies on the real server unless it is delivered
// there.
func (s segment) packet(flags uint8, seq, ack uint32) []byte {
	tcpLen := 20
	if flags&flagSYN != 0 {
		tcpLen += 4 // MSS
	}
	b := make([]byte, 20+tcpLen)
	ip := b[:20]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(ip[4:], uint16(rand.Uint32()))
	binary.BigEndian.PutUint16(ip[6:], 0x4000) // don't fragment
	ip[8], ip[9] = 1, 6
	src, dst := s.src.As4(), s.dst.As4()
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[10:], checksum(ip, 0))
	tcp := b[20:]
	binary.BigEndian.PutUint16(tcp[0:], s.sport)
	binary.BigEndian.PutUint16(tcp[2:], s.dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	if flags&flagACK != 0 {
		binary.BigEndian.PutUint32(tcp[8:], ack)
	}
	tcp[12] = byte(tcpLen/4) << 4
	tcp[13] = flags
	binary.BigEndian.PutUint16(tcp[14:], 64240)
	if flags&flagSYN != 0 {
		copy(tcp[20:], []byte{2, 4, 0x05, 0xb4}) // MSS 1460
	}
	word := func(hi, lo byte) uint32 { return uint32(hi)<<8 | uint32(lo) }
	pseudo := word(src[0], src[1]) + word(src[2], src[3]) + word(dst[0], dst[1]) + word(dst[2], dst[3]) +
		6 + uint32(tcpLen)
	binary.BigEndian.PutUint16(tcp[16:], checksum(tcp, pseudo))
	return b
}

// checksum is the Internet checksum of b, started from sum (a pseudo
// header's sum of 16-bit words).
func checksum(b []byte, sum uint32) uint16 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

// parseTCP reads the flags and acknowledgment number of an IPv4 packet's
// TCP segment.
func parseTCP(b []byte) (flags uint8, ack uint32, ok bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return 0, 0, false
	}
	ihl := int(b[0]&0x0f) * 4
	if len(b) < ihl+20 {
		return 0, 0, false
	}
	tcp := b[ihl:]
	return tcp[13], binary.BigEndian.Uint32(tcp[8:]), true
}

// arpTable is the kernel's IPv4 neighbor table of the calling thread's network
// namespace.
const arpTable = "/proc/thread-self/net/arp"

// neighborMAC returns the MAC address of ip on interface ifname from the
// kernel's neighbor table. A missing entry is resolved by sending the real
// server a datagram (to the discard port), which makes the kernel ask for
// it; the ordinary check that ran before usually resolved it already.
func neighborMAC(ctx context.Context, ip netip.Addr, ifname string) (net.HardwareAddr, error) {
	if mac, ok := readARP(ip, ifname); ok {
		return mac, nil
	}
	if c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(ip, 9))); err == nil {
		c.Write([]byte{0})
		c.Close()
	}
	for {
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("no MAC address for real server %s on %s: it does not answer ARP (direct routing needs it on this director's segment)", ip, ifname)
		case <-time.After(20 * time.Millisecond):
		}
		if mac, ok := readARP(ip, ifname); ok {
			return mac, nil
		}
	}
}

// readARP looks ip up on ifname in /proc/net/arp: complete (or permanent)
// entries only.
func readARP(ip netip.Addr, ifname string) (net.HardwareAddr, bool) {
	f, err := os.Open(arpTable)
	if err != nil {
		return nil, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// IP address  HW type  Flags  HW address  Mask  Device
		fl := strings.Fields(sc.Text())
		if len(fl) < 6 || fl[0] != ip.String() || fl[5] != ifname || fl[2] == "0x0" {
			continue
		}
		if mac, err := net.ParseMAC(fl[3]); err == nil {
			return mac, true
		}
	}
	return nil, false
}
