package health

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/health/check"
)

func TestCheckTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	open := addrPort(t, ln.Addr())
	refused := closedPort(t, "tcp")
	full := fullListener(t)

	tests := []struct {
		name    string
		port    uint16
		source  string
		wantErr string
	}{
		{name: "listening", port: open},
		{name: "listening from source address", port: open, source: "127.0.0.1"},
		{name: "refused", port: refused, wantErr: fmt.Sprintf("connect 127.0.0.1:%d: connection refused", refused)},
		{name: "never answers", port: full, wantErr: fmt.Sprintf("connect 127.0.0.1:%d: timeout after 300ms", full)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := Target{Addr: loopback, Port: tc.port, Spec: check.Spec{Type: check.TCP, Timeout: 300 * time.Millisecond}}
			if tc.source != "" {
				tg.Spec.Source = loopback
			}
			got, took := runCheck(t, DefaultCheckers()[check.TCP], tg)
			if diff := cmp.Diff(tc.wantErr, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if took > 2*time.Second {
				t.Errorf("check took %s, want it bounded by the 300ms timeout", took)
			}
		})
	}
}

func TestCheckTCPSourceUnavailable(t *testing.T) {
	// 192.0.2.1 (TEST-NET-1) is not a local address: binding to it must fail
	// with a clear error instead of silently using another source.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	tg := Target{Addr: loopback, Port: addrPort(t, ln.Addr()), Spec: check.Spec{Type: check.TCP, Timeout: time.Second}}
	tg.Spec.Source = mustAddr("192.0.2.1")
	got, _ := runCheck(t, DefaultCheckers()[check.TCP], tg)
	if want := fmt.Sprintf("bind source address 192.0.2.1 for %s: cannot assign requested address; is it configured on this host?", netip.AddrPortFrom(tg.Addr, tg.Port)); got != want {
		t.Errorf("error = %q, want %q", got, want)
	}
}
