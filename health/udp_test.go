package health

import (
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/health/check"
)

// udpServer answers every datagram on 127.0.0.1 with the datagrams
// reply(payload) returns, in order; none keeps silent. It stops when the test
// ends.
func udpServer(t *testing.T, reply func([]byte) [][]byte) uint16 {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { pc.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, out := range reply(buf[:n]) {
				pc.WriteTo(out, from)
			}
		}
	}()
	return addrPort(t, pc.LocalAddr())
}

func TestCheckUDP(t *testing.T) {
	echo := udpServer(t, func(p []byte) [][]byte { return [][]byte{append([]byte("echo: "), p...)} })
	silent := udpServer(t, func([]byte) [][]byte { return nil })
	refused := closedPort(t, "udp")

	tests := []struct {
		name    string
		port    uint16
		spec    check.Spec
		wantErr string
	}{
		{name: "echo", port: echo, spec: check.Spec{Payload: "ping"}},
		{name: "echo contains", port: echo, spec: check.Spec{Payload: "ping", Expect: "echo: ping"}},
		{name: "empty payload still gets a reply", port: echo},
		{name: "reply without expected text", port: echo, spec: check.Spec{Payload: "ping", Expect: "pong"},
			wantErr: fmt.Sprintf(`udp reply from 127.0.0.1:%d does not contain "pong"`, echo)},
		{name: "silent", port: silent, spec: check.Spec{Payload: "ping"},
			wantErr: fmt.Sprintf("udp reply from 127.0.0.1:%d: timeout after 300ms", silent)},
		{name: "port unreachable is refused", port: refused, spec: check.Spec{Payload: "ping"},
			wantErr: fmt.Sprintf("udp reply from 127.0.0.1:%d: connection refused", refused)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tg := Target{Addr: loopback, Port: tc.port, Spec: tc.spec}
			tg.Spec.Type, tg.Spec.Timeout = check.UDP, 300*time.Millisecond
			got, took := runCheck(t, DefaultCheckers()[check.UDP], tg)
			if diff := cmp.Diff(tc.wantErr, got); diff != "" {
				t.Errorf("error (-want +got):\n%s", diff)
			}
			if took > 2*time.Second {
				t.Errorf("check took %s, want it bounded by the 300ms timeout", took)
			}
		})
	}
}
