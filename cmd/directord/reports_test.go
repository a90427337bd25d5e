//go:build !vm

package main

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// TestRejectedReloadsStaySmall: a reload of a file with 60,000 errors used
// to answer and keep an 11 MB event, so a client with gRPC's default 4 MiB
// limit got RESOURCE_EXHAUSTED for the Reload call and for every Watch from
// before it. The answer, the event and the log carry the first 20 errors and
// "... and N more errors"; default clients keep working.
func TestRejectedReloadsStaySmall(t *testing.T) {
	d, _, cfgPath, good := startLocalDaemon(t, "big", 30, "interval: 200ms, timeout: 100ms")

	// 15,000 services of four errors each.
	bad := good + strings.Repeat("  - { name: '', vip: x, port: 0 }\n", 15000)
	if err := os.WriteFile(cfgPath, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	// A client with gRPC's default limits.
	conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := directorv1.NewDirectorClient(conn)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const reloads = 3
	for range reloads {
		_, err := c.Reload(ctx, &directorv1.ReloadRequest{})
		msg := status.Convert(err).Message()
		if status.Code(err) != codes.FailedPrecondition || !strings.Contains(msg, "... and 59980 more errors") {
			t.Fatalf("Reload = %s %.300s, want FAILED_PRECONDITION with the first 20 of 60000 errors", status.Code(err), msg)
		}
		if len(msg) > 16<<10 {
			t.Errorf("the Reload answer is %d bytes", len(msg))
		}
	}

	w, err := c.Watch(ctx, &directorv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	for rejected := 0; rejected < reloads; {
		m, err := w.Recv()
		if err != nil {
			t.Fatalf("Watch from the start with the default 4 MiB limit: %v", err)
		}
		if e := m.GetEvent(); e.GetKind() == directorv1.EventKind_EVENT_KIND_RELOAD && e.GetTo() == "rejected" {
			rejected++
			if len(e.GetReason()) > 16<<10 || !strings.Contains(e.GetReason(), "... and 59980 more errors") {
				t.Errorf("rejected-reload event reason: %d bytes: %.200s", len(e.GetReason()), e.GetReason())
			}
		}
	}
	for _, line := range strings.Split(d.logs.String(), "\n") {
		if len(line) > 32<<10 {
			t.Errorf("a log line of %d bytes: %.200s", len(line), line)
		}
	}
}
