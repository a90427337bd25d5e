package health

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/anycast-director/director/health/check"
)

// dnsQuestion is what the in-test responder decoded from a query.
type dnsQuestion struct {
	Name         string
	Type, Class  uint16
	RD           bool
	QuestionWire []byte // compared only through the fields above
}

// decodeTestQuery is the responder's own small parser (deliberately separate
// from the checker's code): header, then one question.
func decodeTestQuery(t *testing.T, msg []byte) (id uint16, q dnsQuestion) {
	if len(msg) < 12 || binary.BigEndian.Uint16(msg[4:]) != 1 {
		t.Errorf("query is not a one-question message: % x", msg)
		return 0, q
	}
	id = binary.BigEndian.Uint16(msg)
	q.RD = binary.BigEndian.Uint16(msg[2:])&0x0100 != 0
	var labels []string
	i := 12
	for i < len(msg) && msg[i] != 0 {
		n := int(msg[i])
		labels = append(labels, string(msg[i+1:i+1+n]))
		i += 1 + n
	}
	i++ // the root label
	q.Name = strings.Join(labels, ".") + "."
	q.Type = binary.BigEndian.Uint16(msg[i:])
	q.Class = binary.BigEndian.Uint16(msg[i+2:])
	q.QuestionWire = bytes.Clone(msg[12 : i+4])
	return id, q
}

// testDNSReply builds a response header plus question.
func testDNSReply(id uint16, flags uint16, question []byte) []byte {
	b := make([]byte, 12, 12+len(question))
	binary.BigEndian.PutUint16(b, id)
	binary.BigEndian.PutUint16(b[2:], flags)
	binary.BigEndian.PutUint16(b[4:], 1)
	return append(b, question...)
}

// dnsResponder answers by query name, so one server covers every case.
func dnsResponder(t *testing.T) (port uint16, asked func() []dnsQuestion) {
	var mu sync.Mutex
	var got []dnsQuestion
	port = udpServer(t, func(msg []byte) [][]byte {
		id, q := decodeTestQuery(t, msg)
		mu.Lock()
		got = append(got, q)
		mu.Unlock()
		const resp = 0x8000 | 0x0100 | 0x0080 // QR, RD, RA
		switch q.Name {
		case "ok.example.", "aaaa.example.":
			return [][]byte{testDNSReply(id, resp, q.QuestionWire)}
		case "missing.example.":
			return [][]byte{testDNSReply(id, resp|3, q.QuestionWire)}
		case "servfail.example.":
			return [][]byte{testDNSReply(id, resp|2, q.QuestionWire)}
		case "wrongid.example.":
			return [][]byte{testDNSReply(id+1, resp, q.QuestionWire)}
		case "wrongid-then-ok.example.":
			return [][]byte{testDNSReply(id+1, resp|2, q.QuestionWire), testDNSReply(id, resp, q.QuestionWire)}
		case "noqr.example.":
			return [][]byte{msg} // a reflector: same ID, no QR bit
		case "otherq.example.":
			_, other := decodeTestQuery(t, mustQuery(t, "ok.example", 1))
			return [][]byte{testDNSReply(id, resp, other.QuestionWire)}
		case "MiXeD.example.":
			return [][]byte{testDNSReply(id, resp, bytes.ToLower(q.QuestionWire))}
		}
		return [][]byte{testDNSReply(id, resp|5, q.QuestionWire)} // REFUSED
	})
	return port, func() []dnsQuestion {
		mu.Lock()
		defer mu.Unlock()
		return append([]dnsQuestion(nil), got...)
	}
}

func mustQuery(t *testing.T, name string, qtype uint16) []byte {
	t.Helper()
	q, err := buildDNSQuery(7, name, qtype)
	if err != nil {
		t.Fatal(err)
	}
	return q
}

func TestCheckDNS(t *testing.T) {
	port, asked := dnsResponder(t)
	refused := closedPort(t, "udp")
	ignored := func(what string) string {
		return fmt.Sprintf(`^dns reply from 127\.0\.0\.1:%d: timeout after 300ms \(ignored 1 replies: not a reply to this query: %s\)$`, port, what)
	}
	tests := []struct {
		name      string
		port      uint16
		spec      check.Spec
		wantErr   string // exact text, or a regexp when it starts with ^
		wantAsked *dnsQuestion
	}{
		{name: "noerror", spec: check.Spec{Query: "ok.example"}, wantAsked: &dnsQuestion{Name: "ok.example.", Type: 1, Class: 1, RD: true}},
		{name: "aaaa with trailing dot", spec: check.Spec{Query: "aaaa.example.", QueryType: "aaaa"}, wantAsked: &dnsQuestion{Name: "aaaa.example.", Type: 28, Class: 1, RD: true}},
		{name: "txt", spec: check.Spec{Query: "ok.example", QueryType: "TXT"}, wantAsked: &dnsQuestion{Name: "ok.example.", Type: 16, Class: 1, RD: true}},
		{name: "nxdomain unexpected", spec: check.Spec{Query: "missing.example"}, wantErr: "dns rcode NXDOMAIN, want NOERROR"},
		{name: "nxdomain expected", spec: check.Spec{Query: "missing.example", RCode: "NXDOMAIN"}},
		{name: "servfail", spec: check.Spec{Query: "servfail.example", RCode: "noerror"}, wantErr: "dns rcode SERVFAIL, want NOERROR"},
		{name: "refused", spec: check.Spec{Query: "other.example"}, wantErr: "dns rcode REFUSED, want NOERROR"},
		{name: "mismatched id is ignored", spec: check.Spec{Query: "wrongid.example"}, wantErr: ignored(`id \d+, want \d+`)},
		{name: "mismatched id then the real reply", spec: check.Spec{Query: "wrongid-then-ok.example"}},
		{name: "reflected query without QR bit", spec: check.Spec{Query: "noqr.example"}, wantErr: ignored("QR bit not set")},
		{name: "reply to another question", spec: check.Spec{Query: "otherq.example"}, wantErr: ignored("question differs")},
		{name: "question case may differ", spec: check.Spec{Query: "MiXeD.example"}},
		{name: "port unreachable", port: refused, spec: check.Spec{Query: "ok.example"}, wantErr: fmt.Sprintf("dns reply from 127.0.0.1:%d: connection refused", refused)},
		{name: "bad query type", spec: check.Spec{Query: "ok.example", QueryType: "BOGUS"}, wantErr: `dns query type "BOGUS" is unknown; use A, AAAA, TXT, ... or TYPEnnn`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(asked())
			tg := Target{Addr: loopback, Port: port, Spec: tc.spec}
			if tc.port != 0 {
				tg.Port = tc.port
			}
			tg.Spec.Type, tg.Spec.Timeout = check.DNS, 300*time.Millisecond
			got, took := runCheck(t, DefaultCheckers()[check.DNS], tg)
			if strings.HasPrefix(tc.wantErr, "^") {
				if !regexp.MustCompile(tc.wantErr).MatchString(got) {
					t.Errorf("error = %q, want match for %s", got, tc.wantErr)
				}
			} else if diff := cmp.Diff(tc.wantErr, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if took > 2*time.Second {
				t.Errorf("check took %s, want it bounded by the 300ms timeout", took)
			}
			if tc.wantAsked != nil {
				a := asked()[before:]
				if diff := cmp.Diff([]dnsQuestion{*tc.wantAsked}, a, cmpopts.IgnoreFields(dnsQuestion{}, "QuestionWire")); diff != "" {
					t.Errorf("question the server saw (-want +got):\n%s", diff)
				}
			}
		})
	}
}

func TestBuildDNSQuery(t *testing.T) {
	got, err := buildDNSQuery(0xbeef, "www.example.com", 28)
	if err != nil {
		t.Fatal(err)
	}
	want := []byte{
		0xbe, 0xef, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0, // id, RD, QD=1
		3, 'w', 'w', 'w', 7, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 3, 'c', 'o', 'm', 0,
		0, 28, 0, 1, // AAAA, IN
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("query bytes (-want +got):\n%s", diff)
	}

	root, err := buildDNSQuery(1, ".", 2)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]byte{0, 0, 2, 0, 1}, root[12:]); diff != "" {
		t.Errorf("root question (-want +got):\n%s", diff)
	}

	for _, bad := range []string{"a..b", strings.Repeat("x", 64) + ".example", strings.Repeat("abcdefgh.", 32)} {
		if _, err := buildDNSQuery(1, bad, 1); err == nil {
			t.Errorf("buildDNSQuery(%q) succeeded, want an error", bad)
		}
	}
}

func TestParseDNSCodes(t *testing.T) {
	types := []struct {
		in      string
		want    uint16
		wantErr bool
	}{
		{"", 1, false}, {"A", 1, false}, {"aaaa", 28, false}, {"TXT", 16, false}, {"SRV", 33, false},
		{"TYPE65", 65, false}, {"99", 99, false}, {"NOPE", 0, true}, {"TYPE70000", 0, true},
	}
	for _, tc := range types {
		got, err := parseQueryType(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("parseQueryType(%q) = %d, %v; want %d, error %t", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	rcodes := []struct {
		in      string
		want    int
		wantErr bool
	}{
		{"", 0, false}, {"NOERROR", 0, false}, {"nxdomain", 3, false}, {"REFUSED", 5, false},
		{"2", 2, false}, {"16", 0, true}, {"BOGUS", 0, true},
	}
	for _, tc := range rcodes {
		got, err := parseRCode(tc.in)
		if got != tc.want || (err != nil) != tc.wantErr {
			t.Errorf("parseRCode(%q) = %d, %v; want %d, error %t", tc.in, got, err, tc.want, tc.wantErr)
		}
	}
	if got := rcodeName(12); got != "RCODE12" {
		t.Errorf("rcodeName(12) = %q, want RCODE12", got)
	}
}
