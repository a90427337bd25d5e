package health

import (
	"bufio"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"

	"github.com/anycast-director/director/health/check"
)

// httpChecker probes http and https targets. It holds only a pool of response
// buffers; connections are never reused.
type httpChecker struct {
	readers sync.Pool
}

// newHTTPChecker returns an httpChecker with its buffer pool ready.
func newHTTPChecker() *httpChecker {
	return &httpChecker{readers: sync.Pool{New: func() any { return bufio.NewReaderSize(nil, maxLine) }}}
}

// Check sends one HTTP/1.1 request over a fresh connection (TLS for https)
// and judges the response by status and, optionally, body. It writes the request
// and parses the reply itself instead of using http.Client: there is no
// connection pool that could hide a dead listener, redirects are never followed
// (a 3xx is judged like any other status), a probe costs a fraction of a
// Transport round trip, and what it reads is bounded (httpresp.go): a
// backend answering a huge or endless header fails the check after 16 KiB.
func (h *httpChecker) Check(ctx context.Context, t Target) error {
	ctx, cancel := probeContext(ctx, t)
	defer cancel()
	s := t.Spec
	method, path, host, err := httpRequestLine(t)
	if err != nil {
		return err
	}
	ap := netip.AddrPortFrom(t.Addr, t.Port)
	c, err := dial(ctx, "tcp", t)
	if err != nil {
		return err
	}
	defer closeReset(c)
	stop := watchConn(ctx, c)
	defer stop()
	// The backend took the connection; the request (or the TLS hello) is
	// what it has to answer, and it must not leave late either.
	markSend(ctx)

	conn := c
	if s.Type == check.HTTPS {
		tc := tls.Client(c, tlsConfig(t, host))
		if err := tc.HandshakeContext(ctx); err != nil {
			return probeError(ctx, "tls handshake", ap, t, err)
		}
		conn = tc
	}

	req := make([]byte, 0, 160+len(path)+len(host))
	req = append(req, method...)
	req = append(req, ' ')
	req = append(req, path...)
	req = append(req, " HTTP/1.1\r\nHost: "...)
	req = append(req, host...)
	req = append(req, "\r\nUser-Agent: anycast-director-health\r\nAccept: */*\r\nConnection: close\r\n\r\n"...)
	if _, err := conn.Write(req); err != nil {
		return probeError(ctx, "write request to", ap, t, err)
	}

	lim := &io.LimitedReader{R: conn, N: maxHeaderBytes}
	br := h.readers.Get().(*bufio.Reader)
	br.Reset(lim)
	defer func() { br.Reset(nil); h.readers.Put(br) }()
	resp, err := readResponseHead(br, lim, method)
	if err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return fmt.Errorf("read response from %s: connection closed before a response", ap)
		}
		return probeError(ctx, "read response from", ap, t, err)
	}
	if !statusOK(resp.status, s.ExpectStatus) {
		return fmt.Errorf("http status %d, want %s", resp.status, wantStatus(s.ExpectStatus))
	}
	if s.ExpectBody == "" {
		return nil
	}
	// The body's own budget of raw bytes: room for maxBody decoded bytes in
	// chunks as small as one byte ("1\r\nx\r\n"); resp.body bounds the
	// decoded bytes.
	lim.N = 8 * maxBody
	found, err := containsStream(resp.body(br), []byte(s.ExpectBody), make([]byte, max(4096, 2*len(s.ExpectBody))))
	switch {
	case found:
		return nil
	case err != nil:
		return probeError(ctx, "read body from", ap, t, err)
	}
	return fmt.Errorf("body does not contain %q", s.ExpectBody)
}

// httpRequestLine returns the method, path and Host header for t with their
// defaults applied, refusing characters that would let a config value inject
// extra header lines.
func httpRequestLine(t Target) (method, path, host string, err error) {
	s := t.Spec
	method, path, host = s.Method, s.Path, s.Host
	if method == "" {
		method = http.MethodGet
	}
	if path == "" {
		path = "/"
	}
	if host == "" {
		host = defaultHost(t)
	}
	for _, f := range [...]struct{ name, v string }{{"method", method}, {"path", path}, {"host", host}} {
		if strings.ContainsAny(f.v, " \t\r\n") {
			return "", "", "", fmt.Errorf("http %s %q contains whitespace or a line break; fix the health check", f.name, f.v)
		}
	}
	return method, path, host, nil
}

// defaultHost is the Host header when the Spec names none: the target address,
// with the port only when it is not the scheme's default.
func defaultHost(t Target) string {
	def := uint16(80)
	if t.Spec.Type == check.HTTPS {
		def = 443
	}
	if t.Port == def || t.Port == 0 {
		if t.Addr.Is6() {
			return "[" + t.Addr.String() + "]"
		}
		return t.Addr.String()
	}
	return netip.AddrPortFrom(t.Addr, t.Port).String()
}

// tlsConfig builds the client config for an https probe. SNI is TLSServerName,
// else the configured Host header (without port), else none. With TLSVerify on
// and no name, the certificate is verified against the target IP.
func tlsConfig(t Target, host string) *tls.Config {
	name := t.Spec.TLSServerName
	if name == "" && t.Spec.Host != "" {
		name = hostOnly(host)
	}
	if name == "" && t.Spec.TLSVerify {
		name = t.Addr.String()
	}
	return &tls.Config{
		ServerName:         name,
		InsecureSkipVerify: !t.Spec.TLSVerify, //nolint:gosec // operator's choice per check
		MinVersion:         tls.VersionTLS12,
	}
}

// hostOnly strips an optional port from a Host header value.
func hostOnly(host string) string {
	if h, _, err := net.SplitHostPort(host); err == nil {
		return h
	}
	return strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
}

// statusOK reports whether code is accepted: one of want, or 200-399 when want
// is empty (redirects count as alive because they are not followed).
func statusOK(code int, want []int) bool {
	if len(want) == 0 {
		return code >= 200 && code <= 399
	}
	for _, w := range want {
		if code == w {
			return true
		}
	}
	return false
}

// wantStatus renders the accepted codes for an error message.
func wantStatus(want []int) string {
	switch len(want) {
	case 0:
		return "200-399"
	case 1:
		return strconv.Itoa(want[0])
	}
	parts := make([]string, len(want))
	for i, w := range want {
		parts[i] = strconv.Itoa(w)
	}
	return "one of " + strings.Join(parts, ", ")
}
