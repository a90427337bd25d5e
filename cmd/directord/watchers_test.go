//go:build !vm

package main

import (
	"context"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// fillEvents makes n override events (a weight set and cleared n/2 times).
func fillEvents(t *testing.T, c directorv1.DirectorClient, n int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref := &directorv1.BackendRef{Address: "127.0.0.1"}
	for i := 0; i < n/2; i++ {
		reason := fmt.Sprintf("fill the event log with events of a realistic size, #%d", i)
		if _, err := c.SetWeight(ctx, &directorv1.SetWeightRequest{Backend: ref, Weight: 3, Reason: reason}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.SetWeight(ctx, &directorv1.SetWeightRequest{Backend: ref, Clear: true, Reason: reason}); err != nil {
			t.Fatal(err)
		}
	}
}

// stableRSS waits until the daemon's RSS stops growing (two readings 500 ms
// apart within 1 MiB) and returns it.
func stableRSS(t *testing.T, pid int) int64 {
	t.Helper()
	var last int64
	var rss int64
	waitFor(t, "the daemon's memory to settle", 30*time.Second, func() bool {
		var err error
		if rss, err = procRSS(pid); err != nil {
			t.Fatal(err)
		}
		settled := last != 0 && rss-last < 1<<20
		last = rss
		time.Sleep(500 * time.Millisecond) // readings apart in time, not a synchronisation
		return settled
	})
	return rss
}

// TestIdleWatchersBounded: Watch streams whose clients never read cost
// memory until flow control stops the sends; 200 of them used to cost about
// 1.3 MB each (each stream held a copy of the whole 4,096-event log). A
// stream now holds one page of events besides what gRPC queues (its 64 KiB
// flow-control window and 64 KiB write quota): about 0.3 MB of RSS. At most
// 256 streams are open (control's TestWatchStreamsCapped).
func TestIdleWatchersBounded(t *testing.T) {
	d, _, _, _ := startLocalDaemon(t, "watch", 40, "interval: 1s, timeout: 500ms")
	dial := func() (*grpc.ClientConn, directorv1.DirectorClient) {
		conn, err := grpc.NewClient("unix://"+d.sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return conn, directorv1.NewDirectorClient(conn)
	}
	_, c := dial()
	fillEvents(t, c, 4096)
	before := stableRSS(t, d.pid())

	// 200 clients, each on its own connection like 200 directorctl watch,
	// ask for every event and never read.
	const watchers = 200
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for range watchers {
		_, wc := dial()
		if _, err := wc.Watch(ctx, &directorv1.WatchRequest{}); err != nil {
			t.Fatal(err)
		}
	}
	after := stableRSS(t, d.pid())
	per := (after - before) / watchers
	t.Logf("RSS %d MiB before, %d MiB with %d idle watchers: %d KiB each", before>>20, after>>20, watchers, per>>10)
	if per > 512<<10 {
		t.Errorf("an idle watcher costs %d KiB, want at most 512 KiB", per>>10)
	}

	// The daemon still answers.
	if _, err := d.status(); err != nil {
		t.Fatalf("status with %d idle watchers: %v", watchers, err)
	}
}
