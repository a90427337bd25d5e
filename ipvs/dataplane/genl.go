package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// genlConn is a generic netlink socket in one network namespace for the IPVS
// commands moby/ipvs does not implement (the sync daemons). It speaks the
// IPVS family resolved when the socket opened, so a module loaded after the
// process started is found (moby/ipvs resolves the family once per process).
type genlConn struct {
	mu     sync.Mutex
	fd     int
	family uint16
	seq    uint32
	buf    []byte // receive buffer, reused: every IPVS write reads an ack
}

// genlTimeout bounds every request: the kernel answers IPVS requests at once,
// so a socket that stays silent this long is broken.
const genlTimeout = 5 * time.Second

// ipvsGenlVersion is IPVS_GENL_VERSION.
const ipvsGenlVersion = 1

// openGenl opens a generic netlink socket in the namespace at nsPath ("" is
// the caller's) and resolves the IPVS family.
func openGenl(nsPath string) (*genlConn, error) {
	var fd int
	err := inNetns(nsPath, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("open generic netlink socket: %w", err)
	}
	tv := unix.NsecToTimeval(genlTimeout.Nanoseconds())
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("set generic netlink receive timeout: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("bind generic netlink socket: %w", err)
	}
	c := &genlConn{fd: fd}
	if err := c.resolve("IPVS"); err != nil {
		unix.Close(fd)
		return nil, err
	}
	return c, nil
}

// close releases the socket.
func (c *genlConn) close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil
	}
	err := unix.Close(c.fd)
	c.fd = -1
	return err
}

// resolve looks up a generic netlink family's id by name.
func (c *genlConn) resolve(name string) error {
	attrs := nlAttr(unix.CTRL_ATTR_FAMILY_NAME, append([]byte(name), 0))
	replies, err := c.exchange(unix.GENL_ID_CTRL, unix.CTRL_CMD_GETFAMILY, 1, 0, attrs)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) {
			return fmt.Errorf("%w: no %s generic netlink family (load it with: %s)", ErrNotAvailable, name, modulesHint)
		}
		return fmt.Errorf("resolve generic netlink family %s: %w", name, err)
	}
	for _, r := range replies {
		for _, a := range parseAttrs(r) {
			if a.typ == unix.CTRL_ATTR_FAMILY_ID && len(a.data) >= 2 {
				c.family = binary.NativeEndian.Uint16(a.data)
				return nil
			}
		}
	}
	return fmt.Errorf("resolve generic netlink family %s: the reply has no family id", name)
}

// request sends one IPVS command and returns the payloads (after the generic
// netlink header) of its replies. A dump (flags with NLM_F_DUMP) returns
// every message up to NLMSG_DONE; any other command asks for an ack.
func (c *genlConn) request(cmd uint8, flags uint16, attrs []byte) ([][]byte, error) {
	return c.exchange(c.family, cmd, ipvsGenlVersion, flags, attrs)
}

// exchange sends one generic netlink message and reads its answer.
func (c *genlConn) exchange(family uint16, cmd, version uint8, flags uint16, attrs []byte) ([][]byte, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		return nil, errors.New("generic netlink socket is closed")
	}
	c.seq++
	seq := c.seq
	flags |= unix.NLM_F_REQUEST
	if flags&unix.NLM_F_DUMP == 0 {
		flags |= unix.NLM_F_ACK
	}
	msg := encodeGenl(family, flags, seq, cmd, version, attrs)
	if err := unix.Sendto(c.fd, msg, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("send generic netlink request: %w", err)
	}
	return c.receive(seq)
}

// receive reads the answer to request seq: payloads (copied out of the
// reused buffer) until NLMSG_DONE or the ack, or the kernel's error.
func (c *genlConn) receive(seq uint32) ([][]byte, error) {
	if c.buf == nil {
		c.buf = make([]byte, 64<<10)
	}
	buf := c.buf
	var out [][]byte
	for {
		n, _, err := unix.Recvfrom(c.fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EAGAIN) {
				return nil, fmt.Errorf("no answer from the kernel within %s", genlTimeout)
			}
			return nil, fmt.Errorf("receive generic netlink answer: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(buf[:n])
		if err != nil {
			return nil, fmt.Errorf("parse generic netlink answer: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Seq != seq {
				continue
			}
			switch m.Header.Type {
			case unix.NLMSG_DONE:
				return out, nil
			case unix.NLMSG_ERROR:
				if len(m.Data) < 4 {
					return nil, errors.New("truncated netlink error")
				}
				if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
					return nil, syscall.Errno(errno)
				}
				return out, nil // the ack
			}
			if len(m.Data) >= unix.GENL_HDRLEN {
				out = append(out, append([]byte(nil), m.Data[unix.GENL_HDRLEN:]...))
			}
			if m.Header.Flags&unix.NLM_F_MULTI == 0 {
				return out, nil
			}
		}
	}
}

// encodeGenl builds a netlink message with a generic netlink header.
func encodeGenl(family, flags uint16, seq uint32, cmd, version uint8, attrs []byte) []byte {
	n := unix.NLMSG_HDRLEN + unix.GENL_HDRLEN + len(attrs)
	b := make([]byte, n)
	binary.NativeEndian.PutUint32(b[0:], uint32(n))
	binary.NativeEndian.PutUint16(b[4:], family)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	b[unix.NLMSG_HDRLEN] = cmd
	b[unix.NLMSG_HDRLEN+1] = version
	copy(b[unix.NLMSG_HDRLEN+unix.GENL_HDRLEN:], attrs)
	return b
}

// nlAttr encodes one netlink attribute, padded to 4 bytes.
func nlAttr(typ uint16, data []byte) []byte {
	l := 4 + len(data)
	b := make([]byte, (l+3)&^3)
	binary.NativeEndian.PutUint16(b[0:], uint16(l))
	binary.NativeEndian.PutUint16(b[2:], typ)
	copy(b[4:], data)
	return b
}

// nlaTypeMask strips the nested and byte-order flags from an attribute type
// (NLA_TYPE_MASK).
const nlaTypeMask = ^uint16(unix.NLA_F_NESTED | unix.NLA_F_NET_BYTEORDER)

// attr is one decoded netlink attribute.
type attr struct {
	typ  uint16 // without the nested and byte-order flags
	data []byte
}

// parseAttrs decodes a run of netlink attributes; a truncated tail is
// ignored.
func parseAttrs(b []byte) []attr {
	var out []attr
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:]))
		if l < 4 || l > len(b) {
			break
		}
		out = append(out, attr{typ: binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask, data: b[4:l]})
		b = b[min((l+3)&^3, len(b)):]
	}
	return out
}
