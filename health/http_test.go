package health

import (
	"crypto/tls"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/anycast-director/director/health/check"
)

// seen records what an in-test HTTP server was asked.
type seen struct {
	mu       sync.Mutex
	requests []string // "METHOD host path"
	newConns int
	sni      []string
}

func (s *seen) add(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.requests = append(s.requests, r.Method+" "+r.Host+" "+r.URL.Path)
}

func (s *seen) connState(_ net.Conn, st http.ConnState) {
	if st == http.StateNew {
		s.mu.Lock()
		s.newConns++
		s.mu.Unlock()
	}
}

func (s *seen) snapshot() (requests []string, newConns int, sni []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...), s.newConns, append([]string(nil), s.sni...)
}

// testHandler serves the paths the HTTP checker tests probe.
func testHandler(rec *seen) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		rec.add(r)
		switch r.URL.Path {
		case "/healthz":
			io.WriteString(w, "status: ok\n")
		case "/fail":
			http.Error(w, "overloaded", http.StatusServiceUnavailable)
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		case "/big":
			// The marker sits beyond the bounded read: not found.
			io.WriteString(w, strings.Repeat("x", maxBody)+"ok")
		case "/chunked":
			w.(http.Flusher).Flush()
			io.WriteString(w, "still ok")
		default:
			http.NotFound(w, r)
		}
	})
	return mux
}

func TestCheckHTTP(t *testing.T) {
	rec := &seen{}
	srv := httptest.NewUnstartedServer(testHandler(rec))
	srv.Config.ConnState = rec.connState
	srv.Start()
	t.Cleanup(srv.Close)
	port := addrPort(t, srv.Listener.Addr())
	refused := closedPort(t, "tcp")
	silent := silentListener(t)

	tests := []struct {
		name        string
		port        uint16
		spec        check.Spec
		wantErr     string
		wantRequest string // "" when the server must not see one
	}{
		{name: "ok with defaults", spec: check.Spec{}, wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /", port), wantErr: "http status 404, want 200-399"},
		{name: "healthz", spec: check.Spec{Path: "/healthz"}, wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /healthz", port)},
		{name: "host header and method", spec: check.Spec{Path: "/healthz", Host: "www.example.com", Method: "HEAD"}, wantRequest: "HEAD www.example.com /healthz"},
		{name: "wrong status", spec: check.Spec{Path: "/fail", ExpectStatus: []int{200}}, wantErr: "http status 503, want 200", wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /fail", port)},
		{name: "status not in list", spec: check.Spec{Path: "/healthz", ExpectStatus: []int{204, 301}}, wantErr: "http status 200, want one of 204, 301", wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /healthz", port)},
		{name: "503 by default range", spec: check.Spec{Path: "/fail"}, wantErr: "http status 503, want 200-399", wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /fail", port)},
		{name: "redirect passes and is not followed", spec: check.Spec{Path: "/redirect"}, wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /redirect", port)},
		{name: "redirect fails an exact status", spec: check.Spec{Path: "/redirect", ExpectStatus: []int{200}}, wantErr: "http status 302, want 200", wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /redirect", port)},
		{name: "body contains", spec: check.Spec{Path: "/healthz", ExpectBody: "ok"}, wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /healthz", port)},
		{name: "chunked body contains", spec: check.Spec{Path: "/chunked", ExpectBody: "still ok"}, wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /chunked", port)},
		{name: "wrong body", spec: check.Spec{Path: "/healthz", ExpectBody: "ready"}, wantErr: `body does not contain "ready"`, wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /healthz", port)},
		{name: "body read is bounded", spec: check.Spec{Path: "/big", ExpectBody: "ok"}, wantErr: `body does not contain "ok"`, wantRequest: fmt.Sprintf("GET 127.0.0.1:%d /big", port)},
		{name: "refused", port: refused, wantErr: fmt.Sprintf("connect 127.0.0.1:%d: connection refused", refused)},
		{name: "accepts but never replies", port: silent, wantErr: fmt.Sprintf("read response from 127.0.0.1:%d: timeout after 300ms", silent)},
		{name: "header injection refused", spec: check.Spec{Path: "/x\r\nX-Evil: 1"}, wantErr: `http path "/x\r\nX-Evil: 1" contains whitespace or a line break; fix the health check`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before, _, _ := rec.snapshot()
			tg := Target{Addr: loopback, Port: port, Spec: tc.spec}
			if tc.port != 0 {
				tg.Port = tc.port
			}
			tg.Spec.Type, tg.Spec.Timeout = check.HTTP, 300*time.Millisecond
			got, took := runCheck(t, DefaultCheckers()[check.HTTP], tg)
			if diff := cmp.Diff(tc.wantErr, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if took > 2*time.Second {
				t.Errorf("check took %s, want it bounded by the 300ms timeout", took)
			}
			after, _, _ := rec.snapshot()
			var want []string
			if tc.wantRequest != "" {
				want = []string{tc.wantRequest}
			}
			if diff := cmp.Diff(want, after[len(before):], cmpopts.EquateEmpty()); diff != "" {
				t.Errorf("requests the server saw (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckHTTPNewConnectionPerProbe(t *testing.T) {
	rec := &seen{}
	srv := httptest.NewUnstartedServer(testHandler(rec))
	srv.Config.ConnState = rec.connState
	srv.Start()
	t.Cleanup(srv.Close)
	tg := Target{Addr: loopback, Port: addrPort(t, srv.Listener.Addr()),
		Spec: check.Spec{Type: check.HTTP, Path: "/healthz", Timeout: 5 * time.Second}}
	c := DefaultCheckers()[check.HTTP]
	for range 3 {
		if got, _ := runCheck(t, c, tg); got != "" {
			t.Fatalf("probe failed: %s", got)
		}
	}
	// A pooled connection would let a dead listener look alive.
	if _, conns, _ := rec.snapshot(); conns != 3 {
		t.Errorf("server saw %d new connections for 3 probes, want 3", conns)
	}

	// After the listener dies the very next probe fails.
	srv.Close()
	if got, _ := runCheck(t, c, tg); !strings.Contains(got, "connection refused") {
		t.Errorf("probe after listener closed = %q, want connection refused", got)
	}
}

func TestCheckHTTPS(t *testing.T) {
	rec := &seen{}
	srv := httptest.NewUnstartedServer(testHandler(rec))
	srv.TLS = &tls.Config{
		GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
			rec.mu.Lock()
			rec.sni = append(rec.sni, hello.ServerName)
			rec.mu.Unlock()
			return nil, nil
		},
	}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the verify-on case makes it log a handshake error
	srv.StartTLS()
	t.Cleanup(srv.Close)
	port := addrPort(t, srv.Listener.Addr())

	tests := []struct {
		name    string
		spec    check.Spec
		wantErr string
		wantSNI string
	}{
		{name: "verify off passes", spec: check.Spec{Path: "/healthz"}, wantSNI: ""},
		{name: "verify off with SNI", spec: check.Spec{Path: "/healthz", TLSServerName: "api.example.com"}, wantSNI: "api.example.com"},
		{name: "SNI defaults to Host without port", spec: check.Spec{Path: "/healthz", Host: "www.example.com:8443"}, wantSNI: "www.example.com"},
		{name: "status still checked over TLS", spec: check.Spec{Path: "/fail"}, wantErr: "http status 503, want 200-399"},
		{name: "verify on fails against self-signed cert", spec: check.Spec{Path: "/healthz", TLSVerify: true, TLSServerName: "example.com"},
			wantErr: fmt.Sprintf("tls handshake 127.0.0.1:%d: tls: failed to verify certificate: x509: certificate signed by unknown authority", port), wantSNI: "example.com"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, before := rec.snapshot()
			tg := Target{Addr: loopback, Port: port, Spec: tc.spec}
			tg.Spec.Type, tg.Spec.Timeout = check.HTTPS, 5*time.Second // generous: the failure cases end at once, and a busy -race run needs the time
			got, _ := runCheck(t, DefaultCheckers()[check.HTTPS], tg)
			if diff := cmp.Diff(tc.wantErr, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			_, _, after := rec.snapshot()
			if diff := cmp.Diff([]string{tc.wantSNI}, after[len(before):]); diff != "" {
				t.Errorf("SNI the server saw (-want +got):\n%s", diff)
			}
		})
	}
}

func TestCheckHTTPSAgainstPlainListener(t *testing.T) {
	// A TLS probe against a listener that never speaks TLS times out in the handshake.
	silent := silentListener(t)
	tg := Target{Addr: loopback, Port: silent, Spec: check.Spec{Type: check.HTTPS, Timeout: 300 * time.Millisecond}}
	got, _ := runCheck(t, DefaultCheckers()[check.HTTPS], tg)
	if diff := cmp.Diff(fmt.Sprintf("tls handshake 127.0.0.1:%d: timeout after 300ms", silent), got); diff != "" {
		t.Errorf("error (-want +got):\n%s", diff)
	}
}

func TestCheckHTTPEndlessBody(t *testing.T) {
	// A 200 whose body never ends: without ExpectBody the probe passes as soon
	// as the status is read; with it, the bounded read decides, well before
	// the deadline.
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := []byte(strings.Repeat("y", 4096))
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(srv.Close)
	port := addrPort(t, srv.Listener.Addr())
	for _, tc := range []struct {
		name, expect, wantErr string
	}{
		{name: "status only", wantErr: ""},
		{name: "body marker absent", expect: "ok", wantErr: `body does not contain "ok"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tg := Target{Addr: loopback, Port: port, Spec: check.Spec{Type: check.HTTP, ExpectBody: tc.expect, Timeout: 3 * time.Second}}
			got, took := runCheck(t, DefaultCheckers()[check.HTTP], tg)
			if diff := cmp.Diff(tc.wantErr, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if took > time.Second {
				t.Errorf("probe took %s; an endless body must not hold it until the 3s deadline", took)
			}
		})
	}
}

func TestCheckIPv6(t *testing.T) {
	rec := &seen{}
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Fatalf("IPv6 loopback is needed for this test: %v", err)
	}
	srv := &http.Server{Handler: testHandler(rec)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	ap, err := netip.ParseAddrPort(ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range []check.Type{check.TCP, check.HTTP} {
		tg := Target{Addr: ap.Addr(), Port: ap.Port(), Spec: check.Spec{Type: typ, Path: "/healthz", Timeout: 5 * time.Second}}
		if got, _ := runCheck(t, DefaultCheckers()[typ], tg); got != "" {
			t.Errorf("%s probe of %s: %s", typ, ap, got)
		}
	}
	reqs, _, _ := rec.snapshot()
	if diff := cmp.Diff([]string{fmt.Sprintf("GET [::1]:%d /healthz", ap.Port())}, reqs); diff != "" {
		t.Errorf("requests (-want +got):\n%s", diff)
	}
}
