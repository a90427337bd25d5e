package health

import (
	"context"
	"errors"
	"net/netip"
	"testing"
	"testing/synctest"
	"time"
)

// TestForwardingCheckRunsAfterAPassingProbe: a target with a Path is down
// when its forwarding check fails, although its own probe passes; the
// forwarding check runs only after a passing probe, and never for targets
// without a Path.
func TestForwardingCheckRunsAfterAPassingProbe(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		probeFails := map[uint16]bool{82: true}
		f := newFake(func(_ context.Context, t Target) error {
			if probeFails[t.Port] {
				return errors.New("connect: connection refused")
			}
			return nil
		})
		fwd := newFake(func(_ context.Context, t Target) error {
			if t.Path.VIP.IsValid() && t.Port == 81 {
				return errors.New("forwarding check: no answer")
			}
			return nil
		})
		s := newTestScheduler(f, Options{Forwarding: fwd})
		via := Path{VIP: netip.MustParseAddr("198.18.0.10"), Port: 80}
		plain := tcpTarget(83, time.Second)
		good, bad, dead := tcpTarget(80, time.Second), tcpTarget(81, time.Second), tcpTarget(82, time.Second)
		for _, tg := range []*Target{&good, &bad, &dead} {
			tg.Spec.ForwardingCheck, tg.Path = true, via
		}
		s.Update([]Target{plain, good, bad, dead})
		stop := startScheduler(t, s)
		time.Sleep(2500 * time.Millisecond)
		stop()
		snap := s.Snapshot()
		for _, c := range []struct {
			tg    Target
			state State
		}{{plain, Up}, {good, Up}, {bad, Down}, {dead, Down}} {
			if got := snap[c.tg.Key()]; got.State != c.state {
				t.Errorf("%s (path %v): %s (%s), want %s", ap(c.tg), c.tg.Path.VIP.IsValid(), got.State, got.LastError, c.state)
			}
		}
		if got := snap[bad.Key()].LastError; got != "forwarding check: no answer" {
			t.Errorf("the failing forwarding check reports %q", got)
		}
		// Every passing probe of good reaches the forwarding check, none of
		// plain's; dead never passes its probe.
		if n := fwd.count(ap(good)); n == 0 || n != f.count(ap(good)) {
			t.Errorf("forwarding checks of good: %d, its probes %d", n, f.count(ap(good)))
		}
		if n := fwd.count(ap(plain)); n != 0 {
			t.Errorf("a target without a path got %d forwarding checks", n)
		}
		if n := fwd.count(ap(dead)); n != 0 {
			t.Errorf("the forwarding check ran %d times after a failed probe", n)
		}
	})
}

// TestSegmentChecksums: the SYN and RST the forwarding check builds carry
// valid IPv4 and TCP checksums (a checksum over the data including its own
// checksum field is 0), TTL 1 and the ports and flags asked for.
func TestSegmentChecksums(t *testing.T) {
	s := newSegment(netip.MustParseAddr("10.0.1.11"), netip.MustParseAddr("198.18.0.10"), 80)
	for _, c := range []struct {
		flags uint8
		size  int
	}{{flagSYN, 44}, {flagRST, 40}, {flagRST | flagACK, 40}} {
		b := s.packet(c.flags, s.seq, 12345)
		if len(b) != c.size {
			t.Fatalf("flags %#x: %d bytes, want %d", c.flags, len(b), c.size)
		}
		if sum := checksum(b[:20], 0); sum != 0 {
			t.Errorf("flags %#x: IPv4 header checksum does not verify (%#x)", c.flags, sum)
		}
		src, dst := s.src.As4(), s.dst.As4()
		pseudo := uint32(src[0])<<8 + uint32(src[1]) + uint32(src[2])<<8 + uint32(src[3]) +
			uint32(dst[0])<<8 + uint32(dst[1]) + uint32(dst[2])<<8 + uint32(dst[3]) + 6 + uint32(len(b)-20)
		if sum := checksum(b[20:], pseudo); sum != 0 {
			t.Errorf("flags %#x: TCP checksum does not verify (%#x)", c.flags, sum)
		}
		if b[8] != 1 {
			t.Errorf("TTL %d, want 1", b[8])
		}
		flags, _, ok := parseTCP(b)
		if !ok || flags != c.flags {
			t.Errorf("parsed flags %#x, want %#x", flags, c.flags)
		}
		if sport, dport := uint16(b[20])<<8|uint16(b[21]), uint16(b[22])<<8|uint16(b[23]); sport != s.sport || dport != 80 {
			t.Errorf("ports %d -> %d, want %d -> 80", sport, dport, s.sport)
		}
	}
}
