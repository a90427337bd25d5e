// Package check defines the health-check specification, the one type the
// configuration (which validates it) and the health checkers (which run it)
// share. Its fields are of two kinds: the timing fields (Interval, Timeout,
// Rise, Fall, tagged "timing") say when to probe and how many results flip a
// verdict; every other field says what is probed. A reload that changes only
// timing keeps a backend's verdict; one that changes what is probed starts
// the verdict over.
package check

import (
	"encoding/binary"
	"net/netip"
	"slices"
	"strconv"
	"time"
)

// Type names a checker.
type Type string

// The checker kinds.
const (
	TCP   Type = "tcp"
	HTTP  Type = "http"
	HTTPS Type = "https"
	UDP   Type = "udp"
	DNS   Type = "dns"
	Exec  Type = "exec"
)

// Spec is one health check. The `config` tag of each field is its key in a
// service's `health:` block; the tag option "timing" marks the fields that do
// not change what is probed. AppendProbe encodes every other field: a test
// fails when a field is added that neither AppendProbe encodes nor is tagged
// timing.
type Spec struct {
	// Type selects the checker.
	Type Type `config:"type"`
	// Interval is the time between probe starts.
	Interval time.Duration `config:"interval,timing"`
	// Timeout bounds one probe.
	Timeout time.Duration `config:"timeout,timing"`
	// Rise is how many consecutive successes turn a backend up.
	Rise int `config:"rise,timing"`
	// Fall is how many consecutive failures turn a backend down.
	Fall int `config:"fall,timing"`
	// Port overrides the backend's port; 0 probes the backend's port. Health
	// targets carry the port already applied (and Port 0), so checks that
	// differ only in how they name the same port are one probe.
	Port uint16 `config:"port"`
	// Source is the local address probes are sent from; invalid lets the kernel pick.
	Source netip.Addr `config:"source"`
	// Method is the HTTP request method.
	Method string `config:"method"`
	// Path is the HTTP request path.
	Path string `config:"path"`
	// Host is the HTTP Host header; "" uses the target address.
	Host string `config:"host"`
	// ExpectStatus lists accepted HTTP status codes (empty means 200-399).
	ExpectStatus []int `config:"expect_status"`
	// ExpectBody, when set, must appear in the HTTP body.
	ExpectBody string `config:"expect_body"`
	// TLSServerName is the https SNI and verification name; "" uses Host or the address.
	TLSServerName string `config:"tls_server_name"`
	// TLSVerify turns on certificate verification for https.
	TLSVerify bool `config:"tls_verify"`
	// Payload is the datagram a udp check sends.
	Payload string `config:"payload"`
	// Expect, when set, must appear in a udp check's reply.
	Expect string `config:"expect"`
	// Query is the name a dns check asks for.
	Query string `config:"query"`
	// QueryType is the dns question type ("A", "AAAA", ...).
	QueryType string `config:"query_type"`
	// RCode is the dns answer code that passes ("NOERROR", ...).
	RCode string `config:"rcode"`
	// Command is an exec check's argv. The target is passed in the
	// environment as DIRECTOR_TARGET_ADDR and DIRECTOR_TARGET_PORT.
	Command []string `config:"command"`
	// ForwardingCheck adds, after every probe that passes, a TCP handshake
	// with the VIP and service port sent the way forwarded traffic goes: to
	// the real server's MAC address (dr) or inside IP-in-IP (tunnel). A real
	// server that would drop forwarded traffic (no VIP on lo) fails it.
	ForwardingCheck bool `config:"forwarding_check"`
}

// AppendProbe appends an unambiguous encoding of every field that says what
// is probed (all but the timing fields): two specs probe the same thing
// exactly when their encodings are equal. Strings are length-prefixed, so no
// value can imitate a field boundary.
func (s *Spec) AppendProbe(b []byte) []byte {
	b = appendString(b, string(s.Type))
	b = binary.AppendUvarint(b, uint64(s.Port))
	b = s.Source.AppendTo(b)
	b = append(b, 0)
	for _, v := range [...]string{s.Method, s.Path, s.Host, s.ExpectBody, s.TLSServerName} {
		b = appendString(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(s.ExpectStatus)))
	for _, st := range s.ExpectStatus {
		b = binary.AppendVarint(b, int64(st))
	}
	if s.TLSVerify {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	for _, v := range [...]string{s.Payload, s.Expect, s.Query, s.QueryType, s.RCode} {
		b = appendString(b, v)
	}
	b = binary.AppendUvarint(b, uint64(len(s.Command)))
	for _, a := range s.Command {
		b = appendString(b, a)
	}
	if s.ForwardingCheck {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	return b
}

// AppendTiming appends the timing fields in a readable form,
// "interval/timeout/rise/fall" ("1s/500ms/2/3").
func (s *Spec) AppendTiming(b []byte) []byte {
	b = append(b, s.Interval.String()...)
	b = append(b, '/')
	b = append(b, s.Timeout.String()...)
	b = append(b, '/')
	b = strconv.AppendInt(b, int64(s.Rise), 10)
	b = append(b, '/')
	return strconv.AppendInt(b, int64(s.Fall), 10)
}

// Clone returns s with its slices copied, so the copy shares nothing
// mutable with s.
func (s Spec) Clone() Spec {
	s.ExpectStatus = slices.Clone(s.ExpectStatus)
	s.Command = slices.Clone(s.Command)
	return s
}

// appendString appends v with its length in front.
func appendString(b []byte, v string) []byte {
	b = binary.AppendUvarint(b, uint64(len(v)))
	return append(b, v...)
}
