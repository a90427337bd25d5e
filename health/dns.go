package health

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"strings"
)

// DNS wire constants (RFC 1035 section 4.1).
const (
	dnsHeaderLen = 12
	dnsFlagQR    = 0x8000 // the message is a response
	dnsFlagRD    = 0x0100 // recursion desired
	dnsClassIN   = 1
	// maxIgnoredReplies bounds how many stray datagrams one probe reads before
	// giving up, so a flood cannot keep a probe busy until the deadline.
	maxIgnoredReplies = 64
)

// dnsTypeCode returns the code of a query type name (upper case).
func dnsTypeCode(name string) (uint16, bool) {
	switch name {
	case "A":
		return 1, true
	case "NS":
		return 2, true
	case "CNAME":
		return 5, true
	case "SOA":
		return 6, true
	case "PTR":
		return 12, true
	case "MX":
		return 15, true
	case "TXT":
		return 16, true
	case "AAAA":
		return 28, true
	case "SRV":
		return 33, true
	case "NAPTR":
		return 35, true
	case "DS":
		return 43, true
	case "DNSKEY":
		return 48, true
	case "SVCB":
		return 64, true
	case "HTTPS":
		return 65, true
	case "ANY":
		return 255, true
	case "CAA":
		return 257, true
	}
	return 0, false
}

// rcodeName renders a response code (RFC 1035, RFC 2136) for messages.
func rcodeName(rcode int) string {
	switch rcode {
	case 0:
		return "NOERROR"
	case 1:
		return "FORMERR"
	case 2:
		return "SERVFAIL"
	case 3:
		return "NXDOMAIN"
	case 4:
		return "NOTIMP"
	case 5:
		return "REFUSED"
	case 6:
		return "YXDOMAIN"
	case 7:
		return "YXRRSET"
	case 8:
		return "NXRRSET"
	case 9:
		return "NOTAUTH"
	case 10:
		return "NOTZONE"
	}
	return "RCODE" + strconv.Itoa(rcode)
}

// checkDNS sends one query over UDP to the target and passes when a reply with
// the same ID, the QR bit and the same question carries the expected RCode
// (NOERROR by default). Replies that do not match are ignored, as a resolver
// would ignore them, and the probe keeps waiting until its deadline.
func checkDNS(ctx context.Context, t Target) error {
	ctx, cancel := probeContext(ctx, t)
	defer cancel()
	ap := netip.AddrPortFrom(t.Addr, t.Port)
	qtype, err := parseQueryType(t.Spec.QueryType)
	if err != nil {
		return err
	}
	want, err := parseRCode(t.Spec.RCode)
	if err != nil {
		return err
	}
	id := uint16(rand.Uint32())
	query, err := buildDNSQuery(id, t.Spec.Query, qtype)
	if err != nil {
		return err
	}

	c, err := dial(ctx, "udp", t)
	if err != nil {
		return err
	}
	defer c.Close()
	stop := watchConn(ctx, c)
	defer stop()
	if _, err := c.Write(query); err != nil {
		return probeError(ctx, "send dns query to", ap, t, err)
	}
	buf := make([]byte, maxDatagram)
	var ignored []string
	for len(ignored) < maxIgnoredReplies {
		n, err := c.Read(buf)
		if err != nil {
			err = probeError(ctx, "dns reply from", ap, t, err)
			if len(ignored) > 0 {
				err = fmt.Errorf("%w (ignored %d replies: %s)", err, len(ignored), ignored[0])
			}
			return err
		}
		rcode, err := parseDNSReply(buf[:n], id, query[dnsHeaderLen:])
		if err != nil {
			ignored = append(ignored, err.Error())
			continue
		}
		if rcode != want {
			return fmt.Errorf("dns rcode %s, want %s", rcodeName(rcode), rcodeName(want))
		}
		return nil
	}
	return fmt.Errorf("dns reply from %s: gave up after %d mismatched replies (%s)", ap, len(ignored), ignored[0])
}

// parseQueryType accepts a type name ("AAAA"), "TYPEnnn" or a number; empty is A.
func parseQueryType(s string) (uint16, error) {
	if s == "" {
		return 1, nil // A
	}
	u := strings.ToUpper(s)
	if v, ok := dnsTypeCode(u); ok {
		return v, nil
	}
	if n, err := strconv.ParseUint(strings.TrimPrefix(u, "TYPE"), 10, 16); err == nil {
		return uint16(n), nil
	}
	return 0, fmt.Errorf("dns query type %q is unknown; use A, AAAA, TXT, ... or TYPEnnn", s)
}

// parseRCode accepts an rcode name ("NXDOMAIN") or a number; empty is NOERROR.
func parseRCode(s string) (int, error) {
	if s == "" {
		return 0, nil
	}
	for v := range 16 {
		if rcodeName(v) == strings.ToUpper(s) {
			return v, nil
		}
	}
	if n, err := strconv.ParseUint(s, 10, 4); err == nil {
		return int(n), nil
	}
	return 0, fmt.Errorf("dns rcode %q is unknown; use NOERROR, NXDOMAIN, SERVFAIL, REFUSED, ... or 0-15", s)
}

// buildDNSQuery encodes a standard recursive query for name and qtype, class IN.
func buildDNSQuery(id uint16, name string, qtype uint16) ([]byte, error) {
	msg := make([]byte, dnsHeaderLen, dnsHeaderLen+len(name)+6)
	binary.BigEndian.PutUint16(msg[0:], id)
	binary.BigEndian.PutUint16(msg[2:], dnsFlagRD)
	binary.BigEndian.PutUint16(msg[4:], 1) // QDCOUNT
	msg, err := appendDNSName(msg, name)
	if err != nil {
		return nil, err
	}
	msg = binary.BigEndian.AppendUint16(msg, qtype)
	msg = binary.BigEndian.AppendUint16(msg, dnsClassIN)
	return msg, nil
}

// appendDNSName appends name in wire form (length-prefixed labels, then a zero).
// "" and "." are the root. Escapes are not supported.
func appendDNSName(b []byte, name string) ([]byte, error) {
	name = strings.TrimSuffix(name, ".")
	start := len(b)
	if name != "" {
		for _, label := range strings.Split(name, ".") {
			if label == "" || len(label) > 63 {
				return nil, fmt.Errorf("dns query %q: labels must be 1-63 bytes", name)
			}
			b = append(b, byte(len(label)))
			b = append(b, label...)
		}
	}
	b = append(b, 0)
	if len(b)-start > 255 {
		return nil, fmt.Errorf("dns query %q is longer than 255 bytes", name)
	}
	return b, nil
}

// errNotOurs marks replies that belong to another query or are not responses.
var errNotOurs = errors.New("not a reply to this query")

// parseDNSReply checks that msg answers the query with the given id and
// question (wire form, compared case-insensitively) and returns its rcode.
func parseDNSReply(msg []byte, id uint16, question []byte) (int, error) {
	if len(msg) < dnsHeaderLen {
		return 0, fmt.Errorf("%w: %d bytes is shorter than a header", errNotOurs, len(msg))
	}
	if got := binary.BigEndian.Uint16(msg[0:]); got != id {
		return 0, fmt.Errorf("%w: id %d, want %d", errNotOurs, got, id)
	}
	flags := binary.BigEndian.Uint16(msg[2:])
	if flags&dnsFlagQR == 0 {
		return 0, fmt.Errorf("%w: QR bit not set", errNotOurs)
	}
	// Servers may omit the question in error replies (FORMERR, NOTIMP); when
	// one is present it must be ours.
	if qd := binary.BigEndian.Uint16(msg[4:]); qd > 0 {
		rest := msg[dnsHeaderLen:]
		if len(rest) < len(question) || !equalFoldASCII(rest[:len(question)], question) {
			return 0, fmt.Errorf("%w: question differs", errNotOurs)
		}
	}
	return int(flags & 0x000f), nil
}

// equalFoldASCII compares DNS wire names: ASCII letters case-insensitively
// (RFC 4343), every other byte exactly.
func equalFoldASCII(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
