package dataplane

import (
	"encoding/binary"
	"errors"
	"fmt"
	"syscall"

	moby "github.com/moby/ipvs"
	"golang.org/x/sys/unix"
)

// kernelWrite is one IPVS write: a command, its service and, for the
// destination commands, its destination.
type kernelWrite struct {
	cmd uint8
	s   *moby.Service
	d   *moby.Destination
}

// batchKernel is implemented by kernels that take several writes in one
// request (genlKernel). WriteBatch runs every write, in order, whatever
// fails, and returns each one's error, nil for those that succeeded.
type batchKernel interface {
	WriteBatch(writes []kernelWrite) []error
}

// run issues w through k's methods, for kernels without batches.
func (w kernelWrite) run(k kernel) error {
	switch w.cmd {
	case ipvsCmdNewService:
		return k.NewService(w.s)
	case ipvsCmdSetService:
		return k.UpdateService(w.s)
	case ipvsCmdDelService:
		return k.DelService(w.s)
	case ipvsCmdNewDest:
		return k.NewDestination(w.s, w.d)
	case ipvsCmdSetDest:
		return k.UpdateDestination(w.s, w.d)
	case ipvsCmdDelDest:
		return k.DelDestination(w.s, w.d)
	}
	return fmt.Errorf("unknown IPVS command %d", w.cmd)
}

// maxBatch is how many writes one request carries. The kernel queues an
// answer on the socket for each failed write and for the last one before
// the request returns; 64 of them fit the default receive buffer several
// times over, so none is dropped.
const maxBatch = 64

// WriteBatch sends writes in requests of up to maxBatch messages each: n
// writes cost two system calls per request instead of two each, which
// under emulation, with the health checks competing for the CPU, was most
// of the time a reload of one weight in 100 services took.
func (k *genlKernel) WriteBatch(writes []kernelWrite) []error {
	errs := make([]error, len(writes))
	msgs := make([]genlMessage, 0, min(len(writes), maxBatch))
	for start := 0; start < len(writes); start += maxBatch {
		chunk := writes[start:min(start+maxBatch, len(writes))]
		msgs = msgs[:0]
		for _, w := range chunk {
			attrs := encodeService(w.s)
			if w.d != nil {
				attrs = append(attrs, encodeDest(w.d)...)
			}
			msgs = append(msgs, genlMessage{cmd: w.cmd, attrs: attrs})
		}
		k.c.batch(msgs, errs[start:start+len(chunk)])
	}
	return errs
}

// genlMessage is one IPVS command of a batch.
type genlMessage struct {
	cmd   uint8
	attrs []byte
}

// batch sends msgs in one datagram, which the kernel runs one after the
// other, and sets errs[i] to msgs[i]'s failure. Only the last message asks
// for an ack; the kernel answers the others only when they fail, and its
// answers come in order, so when the last one's answer arrives every
// failure before it has been read.
func (c *genlConn) batch(msgs []genlMessage, errs []error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.fd < 0 {
		fillErrs(errs, errors.New("generic netlink socket is closed"))
		return
	}
	first := c.seq + 1
	var buf []byte
	for i, m := range msgs {
		c.seq++
		flags := uint16(unix.NLM_F_REQUEST)
		if i == len(msgs)-1 {
			flags |= unix.NLM_F_ACK
		}
		buf = append(buf, encodeGenl(c.family, flags, c.seq, m.cmd, ipvsGenlVersion, m.attrs)...)
	}
	if err := unix.Sendto(c.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		fillErrs(errs, fmt.Errorf("send generic netlink request: %w", err))
		return
	}
	if err := c.answers(first, errs); err != nil {
		fillErrs(errs, err)
	}
}

// answers reads the kernel's answers to the len(errs) messages from
// sequence number first into errs, until the last one's. An error means the
// rest could not be read: which of the writes without an answer yet took
// effect is unknown.
func (c *genlConn) answers(first uint32, errs []error) error {
	if c.buf == nil {
		c.buf = make([]byte, 64<<10)
	}
	for {
		n, _, err := unix.Recvfrom(c.fd, c.buf, 0)
		switch {
		case errors.Is(err, unix.EAGAIN):
			return fmt.Errorf("no answer from the kernel within %s; the outcome is unknown until IPVS is read back", genlTimeout)
		case err != nil:
			return fmt.Errorf("receive generic netlink answer (the outcome is unknown until IPVS is read back): %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(c.buf[:n])
		if err != nil {
			return fmt.Errorf("parse generic netlink answer: %w", err)
		}
		for _, m := range msgs {
			i := m.Header.Seq - first // wraps past the batch for earlier requests
			if m.Header.Type != unix.NLMSG_ERROR || int(i) >= len(errs) {
				continue // an answer to an earlier request
			}
			if len(m.Data) < 4 {
				return errors.New("truncated netlink error")
			}
			if errno := -int32(binary.NativeEndian.Uint32(m.Data)); errno != 0 {
				errs[i] = syscall.Errno(errno)
			}
			if int(i) == len(errs)-1 {
				return nil
			}
		}
	}
}

// fillErrs sets every errs entry still nil to err.
func fillErrs(errs []error, err error) {
	for i := range errs {
		if errs[i] == nil {
			errs[i] = err
		}
	}
}
