package health

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/health/check"
)

// hostileServer answers every connection by reading the request and then
// writing head, then repeat over and over (up to 64 MiB, or until the client
// goes away). It stands for a backend that answers a health probe with a
// huge or endless reply.
func hostileServer(t *testing.T, head, repeat string) uint16 {
	t.Helper()
	return acceptLoop(t, "127.0.0.1:0", func(c net.Conn) {
		go func() {
			defer c.Close()
			buf := make([]byte, 4096)
			_, _ = c.Read(buf) // the request
			if _, err := io.WriteString(c, head); err != nil || repeat == "" {
				return
			}
			chunk := []byte(strings.Repeat(repeat, max(1, 64<<10/len(repeat))))
			for sent := 0; sent < 64<<20; sent += len(chunk) {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
	}, func() {})
}

// allocatedBy returns the bytes the process allocated while f ran.
func allocatedBy(f func()) uint64 {
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	f()
	runtime.ReadMemStats(&after)
	return after.TotalAlloc - before.TotalAlloc
}

// TestCheckHTTPCaps: a backend answering with a huge header line, endless
// header lines, a header block over the cap, or an endless body fails (or
// passes) the check after reading a bounded amount: the probe allocates less
// than 1 MiB however much the backend sends, and ends long before its
// deadline. Before the caps, http.ReadResponse kept every header: one such
// backend drove directord to 0.98-1.9 GB.
func TestCheckHTTPCaps(t *testing.T) {
	const timeout = 5 * time.Second
	tests := []struct {
		name, head, repeat, expectBody string
		wantErr                        string // "" passes
	}{
		{name: "endless header line", head: "HTTP/1.1 200 OK\r\nX-Big: ", repeat: "a",
			wantErr: errLineTooLong.Error()},
		{name: "endless header lines", head: "HTTP/1.1 200 OK\r\n", repeat: "X-A: b\r\n",
			wantErr: errTooManyHeaders.Error()},
		{name: "header block over the cap", head: "HTTP/1.1 200 OK\r\n",
			repeat: "X-Long: " + strings.Repeat("a", 3000) + "\r\n", wantErr: errHeaderTooLarge.Error()},
		{name: "endless status line", head: "HTTP/1.1 200 ", repeat: "OK",
			wantErr: errLineTooLong.Error()},
		{name: "endless body without the marker", head: "HTTP/1.1 200 OK\r\n\r\n", repeat: "x",
			expectBody: "ready", wantErr: `body does not contain "ready"`},
		{name: "endless chunked body", head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			repeat: "4\r\nxxxx\r\n", expectBody: "ready", wantErr: `body does not contain "ready"`},
		{name: "marker within the cap of an endless body", head: "HTTP/1.1 200 OK\r\n\r\n" + strings.Repeat("x", 60<<10) + "ready",
			repeat: "x", expectBody: "ready"},
		{name: "marker across chunks", head: "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nrea\r\n2\r\ndy\r\n0\r\n\r\n",
			expectBody: "ready"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			port := hostileServer(t, tc.head, tc.repeat)
			tg := Target{Addr: loopback, Port: port, Spec: check.Spec{Type: check.HTTP, Timeout: timeout, ExpectBody: tc.expectBody}}
			var got string
			var took time.Duration
			alloc := allocatedBy(func() { got, took = runCheck(t, DefaultCheckers()[check.HTTP], tg) })
			if !strings.Contains(got, tc.wantErr) || (tc.wantErr == "") != (got == "") {
				t.Errorf("error %q, want %q", got, tc.wantErr)
			}
			if alloc > 1<<20 {
				t.Errorf("the probe allocated %d KiB, want under 1 MiB", alloc>>10)
			}
			if took > timeout/2 {
				t.Errorf("the probe took %s; a capped read ends long before the %s deadline", took, timeout)
			}
		})
	}
}

// TestContainsStream: the streaming search finds a marker wherever the
// reads split it, and stops at EOF.
func TestContainsStream(t *testing.T) {
	body := strings.Repeat("x", 10000) + "marker" + strings.Repeat("y", 10)
	for _, step := range []int{1, 3, 5, 4096, 20000} {
		r := &stepReader{data: []byte(body), step: step}
		found, err := containsStream(r, []byte("marker"), make([]byte, 4096))
		if !found || err != nil {
			t.Errorf("reads of %d bytes: found=%t err=%v", step, found, err)
		}
		r = &stepReader{data: []byte(body), step: step}
		if found, _ := containsStream(r, []byte("absent"), make([]byte, 4096)); found {
			t.Errorf("reads of %d bytes: found a marker that is not there", step)
		}
	}
}

// stepReader yields data step bytes at a time.
type stepReader struct {
	data []byte
	step int
}

func (r *stepReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := copy(p, r.data[:min(r.step, len(r.data))])
	r.data = r.data[n:]
	return n, nil
}

// udpFlood answers every datagram on a fresh socket with replies from
// reply (called with the request), until the test ends.
func udpFlood(t *testing.T, reply func(req []byte) [][]byte) uint16 {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			for _, r := range reply(append([]byte(nil), buf[:n]...)) {
				_, _ = pc.WriteTo(r, from)
			}
		}
	}()
	return addrPort(t, pc.LocalAddr())
}

// TestCheckUDPReadsOneBoundedReply: only the first maxDatagram bytes of one
// reply count: a marker beyond them is not seen.
func TestCheckUDPReadsOneBoundedReply(t *testing.T) {
	port := udpFlood(t, func([]byte) [][]byte {
		return [][]byte{[]byte(strings.Repeat("x", maxDatagram) + "pong")}
	})
	tg := Target{Addr: loopback, Port: port, Spec: check.Spec{Type: check.UDP, Timeout: time.Second, Payload: "ping", Expect: "pong"}}
	got, _ := runCheck(t, DefaultCheckers()[check.UDP], tg)
	if want := fmt.Sprintf("udp reply from 127.0.0.1:%d does not contain \"pong\"", port); got != want {
		t.Errorf("error %q, want %q", got, want)
	}
}

// TestCheckDNSBoundsReplies: a flood of replies that are not answers ends
// the probe after maxIgnoredReplies of them, not at the deadline; an oversized
// answer is judged from its first maxDatagram bytes.
func TestCheckDNSBoundsReplies(t *testing.T) {
	flood := udpFlood(t, func(req []byte) [][]byte {
		var out [][]byte
		for i := range 10 * maxIgnoredReplies {
			bad := append([]byte(nil), req...)
			bad[0], bad[1] = req[0]^0xff, byte(i) // another ID
			bad[2] |= 0x80
			out = append(out, bad)
		}
		return out
	})
	tg := Target{Addr: loopback, Port: flood, Spec: check.Spec{Type: check.DNS, Timeout: 5 * time.Second, Query: "ok.example"}}
	got, took := runCheck(t, DefaultCheckers()[check.DNS], tg)
	if !strings.Contains(got, fmt.Sprintf("gave up after %d mismatched replies", maxIgnoredReplies)) || took > 2*time.Second {
		t.Errorf("after a flood of stray replies: %q in %s, want giving up after %d, well before the 5s deadline",
			got, took, maxIgnoredReplies)
	}

	big := udpFlood(t, func(req []byte) [][]byte {
		ans := append([]byte(nil), req...)
		ans[2] |= 0x80 // QR, rcode NOERROR
		return [][]byte{append(ans, bytes.Repeat([]byte{0}, 3*maxDatagram)...)}
	})
	tg.Port = big
	ctx, cancel := context.WithTimeout(t.Context(), time.Second)
	defer cancel()
	if err := DefaultCheckers()[check.DNS].Check(ctx, tg); err != nil {
		t.Errorf("an oversized NOERROR answer: %v, want pass", err)
	}
}
