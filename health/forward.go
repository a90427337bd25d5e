package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// The forwarding check (check.Spec.ForwardingCheck). A real server that
// answers on its own address but lacks the VIP on lo passes every ordinary
// check and drops every forwarded packet. This probe imitates forwarded
// traffic instead: a TCP SYN from this director's address to the VIP and
// service port, delivered the way IPVS delivers it (direct routing: an
// Ethernet frame to the real server's MAC address; tunnel: inside IP-in-IP
// to its address), and waits for the SYN-ACK, which the real server sends
// from the VIP straight back. A reset means nothing listens on the VIP; no
// answer means the real server does not take the VIP as its own.
//
// The frames bypass this host's IP stack, so IPVS does not see the probe;
// the SYN-ACK, from a VIP this director also holds, is dropped by its IP
// stack as a martian but seen first by the probe's packet socket, which
// then resets the half-open connection on the real server. The SYN carries
// TTL 1, so a real server without the VIP cannot forward it somewhere that
// answers for it. IPv4 only; needs CAP_NET_RAW.

// forwardingProbe runs the forwarding check of t (t.Path set) until ctx's
// deadline.
func forwardingProbe(ctx context.Context, t Target) error {
	ctx, cancel := probeContext(ctx, t)
	defer cancel()
	p := t.Path
	if !p.VIP.Is4() || !t.Addr.Is4() {
		return fmt.Errorf("forwarding check of %s: IPv4 only", netip.AddrPortFrom(p.VIP, p.Port))
	}
	rt, err := routeTo(t)
	if err != nil {
		return fmt.Errorf("forwarding check: %w", err)
	}
	syn := newSegment(rt.src, p.VIP, p.Port)
	ifindex := rt.ifindex
	if p.Tunnel {
		ifindex = 0 // the answer comes back on whatever interface leads here
	}
	rx, err := openCapture(ifindex, syn)
	if err != nil {
		return fmt.Errorf("forwarding check: %w", err)
	}
	defer unix.Close(rx)
	send, how, err := sender(ctx, t, rt, rx)
	if err != nil {
		return fmt.Errorf("forwarding check: %w", err)
	}
	if err := send(syn.packet(flagSYN, syn.seq, 0)); err != nil {
		return fmt.Errorf("forwarding check: send the SYN %s: %w", how, err)
	}
	flags, ack, err := waitReply(ctx, rx)
	target := netip.AddrPortFrom(p.VIP, p.Port)
	switch {
	case err != nil && ctx.Err() != nil:
		return fmt.Errorf("forwarding check: no answer from %s %s, %w: %s", target, how, timeoutError(t), missingVIPHint(p))
	case err != nil:
		return fmt.Errorf("forwarding check: %w", err)
	case flags&flagRST != 0:
		return fmt.Errorf("forwarding check: %s refused %s: the real server has the VIP but nothing listens on it", target, how)
	}
	// Reset the half-open connection left on the real server.
	_ = send(syn.packet(flagRST, ack, 0))
	return nil
}

// missingVIPHint says what to look at on a real server that never answers.
func missingVIPHint(p Path) string {
	if p.Tunnel {
		return fmt.Sprintf("is the VIP bound on the real server (directord realserver add %s), tunl0 up and rp_filter off?", p.VIP)
	}
	return fmt.Sprintf("is the VIP bound on the real server's lo (directord realserver add %s)?", p.VIP)
}

// route is how this director reaches a real server.
type route struct {
	src     netip.Addr // this director's address towards it
	ifindex int        // the interface of that address
	ifname  string
}

// routeTo finds the address this director reaches t from (Spec.Source when
// set) and the interface that holds it.
func routeTo(t Target) (route, error) {
	var rt route
	if t.Spec.Source.IsValid() {
		rt.src = t.Spec.Source
	} else {
		c, err := net.DialUDP("udp4", nil, net.UDPAddrFromAddrPort(netip.AddrPortFrom(t.Addr, 9)))
		if err != nil {
			return rt, fmt.Errorf("no route to real server %s: %w", t.Addr, err)
		}
		rt.src = c.LocalAddr().(*net.UDPAddr).AddrPort().Addr().Unmap()
		c.Close()
	}
	ifs, err := net.Interfaces()
	if err != nil {
		return rt, fmt.Errorf("list interfaces: %w", err)
	}
	for _, ifi := range ifs {
		addrs, err := ifi.Addrs()
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok {
				if ip, ok := netip.AddrFromSlice(n.IP); ok && ip.Unmap() == rt.src {
					rt.ifindex, rt.ifname = ifi.Index, ifi.Name
					return rt, nil
				}
			}
		}
	}
	return rt, fmt.Errorf("no interface holds %s, the address towards real server %s", rt.src, t.Addr)
}

// sender returns how the probe's packets are sent, and says so for errors:
// framed to the real server's MAC address, or inside IP-in-IP.
func sender(ctx context.Context, t Target, rt route, capture int) (func([]byte) error, string, error) {
	if t.Path.Tunnel {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_IPIP)
		if err != nil {
			return nil, "", fmt.Errorf("open an IP-in-IP socket (needs CAP_NET_RAW): %w", err)
		}
		context.AfterFunc(ctx, func() { unix.Close(fd) })
		to := &unix.SockaddrInet4{Addr: t.Addr.As4()}
		return func(b []byte) error { return unix.Sendto(fd, b, 0, to) }, "in IP-in-IP to " + t.Addr.String(), nil
	}
	mac, err := neighborMAC(ctx, t.Addr, rt.ifname)
	if err != nil {
		return nil, "", err
	}
	to := &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: rt.ifindex, Halen: 6}
	copy(to.Addr[:], mac)
	how := fmt.Sprintf("through %s's MAC %s on %s", t.Addr, mac, rt.ifname)
	return func(b []byte) error { return unix.Sendto(capture, b, 0, to) }, how, nil
}

// openCapture opens a packet socket on ifindex (0: every interface) that
// receives only the real server's answer to s: IPv4 TCP from the VIP and
// port to this director's address and the probe's port, first fragments
// only. The filter is in place before the socket binds, so nothing else is
// ever queued.
func openCapture(ifindex int, s segment) (int, error) {
	fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		return -1, fmt.Errorf("open a packet socket (needs CAP_NET_RAW): %w", err)
	}
	prog := answerFilter(s)
	if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER,
		&unix.SockFprog{Len: uint16(len(prog)), Filter: &prog[0]}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("attach the packet filter: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_IP), Ifindex: ifindex}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("bind the packet socket: %w", err)
	}
	return fd, nil
}

// answerFilter is the classic BPF program of openCapture. A SOCK_DGRAM
// packet socket hands it the packet from the IP header on.
func answerFilter(s segment) []unix.SockFilter {
	vip, src := s.dst.As4(), s.src.As4()
	const (
		ldB  = unix.BPF_LD | unix.BPF_B | unix.BPF_ABS
		ldH  = unix.BPF_LD | unix.BPF_H | unix.BPF_ABS
		ldW  = unix.BPF_LD | unix.BPF_W | unix.BPF_ABS
		ldIH = unix.BPF_LD | unix.BPF_H | unix.BPF_IND
		ldX  = unix.BPF_LDX | unix.BPF_B | unix.BPF_MSH
		jeq  = unix.BPF_JMP | unix.BPF_JEQ | unix.BPF_K
		jset = unix.BPF_JMP | unix.BPF_JSET | unix.BPF_K
		and  = unix.BPF_ALU | unix.BPF_AND | unix.BPF_K
		ret  = unix.BPF_RET | unix.BPF_K
		drop = 17 // the index of the last instruction
	)
	// toDrop is the jump offset from instruction i to drop.
	toDrop := func(i int) uint8 { return uint8(drop - i - 1) }
	f := func(code uint16, jt, jf uint8, k uint32) unix.SockFilter {
		return unix.SockFilter{Code: code, Jt: jt, Jf: jf, K: k}
	}
	return []unix.SockFilter{
		f(ldB, 0, 0, 0),                        // 0: version and header length
		f(and, 0, 0, 0xf0),                     // 1
		f(jeq, 0, toDrop(2), 0x40),             // 2: IPv4
		f(ldB, 0, 0, 9),                        // 3: protocol
		f(jeq, 0, toDrop(4), unix.IPPROTO_TCP), // 4: TCP
		f(ldW, 0, 0, 12),                       // 5: source address
		f(jeq, 0, toDrop(6), binary.BigEndian.Uint32(vip[:])), // 6: the VIP
		f(ldW, 0, 0, 16), // 7: destination address
		f(jeq, 0, toDrop(8), binary.BigEndian.Uint32(src[:])), // 8: this director
		f(ldH, 0, 0, 6),                        // 9: flags and fragment offset
		f(jset, toDrop(10), 0, 0x1fff),         // 10: a later fragment
		f(ldX, 0, 0, 0),                        // 11: x = IP header length
		f(ldIH, 0, 0, 0),                       // 12: source port
		f(jeq, 0, toDrop(13), uint32(s.dport)), // 13: the service port
		f(ldIH, 0, 0, 2),                       // 14: destination port
		f(jeq, 0, toDrop(15), uint32(s.sport)), // 15: the probe's port
		f(ret, 0, 0, 0xffff),                   // 16: accept
		f(ret, 0, 0, 0),                        // 17: drop
	}
}

// waitReply reads the answer the capture socket lets through: its TCP flags
// and acknowledgment number, or ctx's error once its deadline passes.
func waitReply(ctx context.Context, fd int) (flags uint8, ack uint32, err error) {
	buf := make([]byte, 256)
	for {
		if err := ctx.Err(); err != nil {
			return 0, 0, err
		}
		wait := 100 * time.Millisecond
		if d, ok := ctx.Deadline(); ok {
			wait = min(wait, max(time.Until(d), time.Millisecond))
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(pfd, int(wait.Milliseconds())+1); err != nil && !errors.Is(err, unix.EINTR) {
			return 0, 0, fmt.Errorf("wait for the answer: %w", err)
		}
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return 0, 0, fmt.Errorf("read the answer: %w", err)
		}
		if flags, ack, ok := parseTCP(buf[:n]); ok {
			return flags, ack, nil
		}
	}
}

// htons converts a 16-bit value to network order for the packet socket's
// protocol field, which the kernel takes as stored.
func htons(v uint16) uint16 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return binary.NativeEndian.Uint16(b[:])
}
