package control_test

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/anycast-director/director/announcer"
	"github.com/anycast-director/director/control/controltest"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// largeConfig has vips services, one per VIP, with backends backends each,
// all distinct.
func largeConfig(vips, backends int) string {
	var b strings.Builder
	b.WriteString("director:\n  name: bench\n  announce: none\n  hold_down: 0s\n  resync_interval: 2s\nservices:\n")
	for i := range vips {
		fmt.Fprintf(&b, "  - name: svc%d\n    vip: 198.18.%d.%d\n    port: 80\n    scheduler: mh\n", i, i/250, i%250+1)
		b.WriteString("    health: { type: tcp, interval: 2s, timeout: 1s }\n    backends:\n")
		for j := range backends {
			fmt.Fprintf(&b, "      - { address: 10.%d.%d.%d }\n", 2+i/250, i%250, j+1)
		}
	}
	return b.String()
}

// BenchmarkGetStatus measures one GetStatus call over the real Unix socket
// (conversion, protobuf encoding, transport and decoding) with 1,000 VIPs of
// 10 backends each. Target: under 20 ms.
func BenchmarkGetStatus(b *testing.B) {
	const vips, backends = 1000, 10
	h := controltest.Start(b, controltest.Options{Config: largeConfig(vips, backends)})
	h.WaitFor("every VIP advertised", func(s *announcer.Status) bool {
		n := 0
		for _, v := range s.VIPs {
			if v.Advertised {
				n++
			}
		}
		return n == vips
	})
	ctx := b.Context()
	var size int
	b.ResetTimer()
	cpu0 := cpuTime(b)
	start := time.Now()
	for b.Loop() {
		resp, err := h.Client.GetStatus(ctx, &directorv1.GetStatusRequest{})
		if err != nil {
			b.Fatal(err)
		}
		if len(resp.GetServices()) != vips || len(resp.GetServices()[0].GetBackends()) != backends {
			b.Fatalf("status has %d services", len(resp.GetServices()))
		}
		size = proto.Size(resp)
	}
	elapsed := time.Since(start)
	cpu := cpuTime(b) - cpu0
	b.ReportMetric(float64(elapsed.Microseconds())/1000/float64(b.N), "ms/op")
	// CPU time of client and server together: steadier than wall time on a
	// shared machine.
	b.ReportMetric(float64(cpu.Microseconds())/1000/float64(b.N), "cpu-ms/op")
	b.ReportMetric(float64(size), "resp-bytes")
}

// cpuTime is the process's user plus system CPU time.
func cpuTime(b *testing.B) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		b.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
