package health

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
)

// maxDatagram bounds the reply buffer of udp and dns probes.
const maxDatagram = 4096

// checkUDP sends Spec.Payload from a fresh connected socket and passes when a
// reply arrives before the deadline (and contains Spec.Expect when set). On a
// connected socket the kernel reports an ICMP port unreachable as
// "connection refused", so a closed port fails fast instead of timing out.
func checkUDP(ctx context.Context, t Target) error {
	ctx, cancel := probeContext(ctx, t)
	defer cancel()
	ap := netip.AddrPortFrom(t.Addr, t.Port)
	c, err := dial(ctx, "udp", t)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := watchConn(ctx, c)
	defer stop()
	if _, err := c.Write([]byte(t.Spec.Payload)); err != nil {
		return probeError(ctx, "send to", ap, t, err)
	}
	buf := make([]byte, maxDatagram)
	n, err := c.Read(buf)
	if err != nil {
		return probeError(ctx, "udp reply from", ap, t, err)
	}
	if t.Spec.Expect != "" && !bytes.Contains(buf[:n], []byte(t.Spec.Expect)) {
		return fmt.Errorf("udp reply from %s does not contain %q", ap, t.Spec.Expect)
	}
	return nil
}
