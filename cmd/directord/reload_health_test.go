//go:build !vm

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// timingReloadConfig is a local service checked over HTTP with the given
// health block.
func timingReloadConfig(dir, metrics string, port int, healthBlock string) string {
	return fmt.Sprintf(`director:
  name: t1
  announce: none
  hold_down: 0s
  graceful_shutdown: 0s
  linger: 0s
  state_dir: %[1]s/state
api:
  socket: %[1]s/d.sock
metrics:
  listen: %s
services:
  - name: web
    vip: 127.0.0.10
    port: 80
    forwarding: local
    health: %s
    backends:
      - { address: 127.0.0.1, port: %d }
`, dir, metrics, healthBlock, port)
}

// httpSuccesses reads directord_checks_total for passed http probes.
func httpSuccesses(page string) int {
	m := regexp.MustCompile(`(?m)^directord_checks_total\{result="success",type="http"\} (\d+)`).FindStringSubmatch(page)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// eventLog collects a Watch stream's events.
type eventLog struct {
	mu     sync.Mutex
	events []*directorv1.Event
}

func (l *eventLog) add(e *directorv1.Event) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.events = append(l.events, e)
}

func (l *eventLog) all() []*directorv1.Event {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*directorv1.Event(nil), l.events...)
}

// watchEvents follows every event the daemon holds and every later one,
// until the test ends.
func watchEvents(t *testing.T, sock string) *eventLog {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(func() { cancel(); conn.Close() })
	stream, err := directorv1.NewDirectorClient(conn).Watch(ctx, &directorv1.WatchRequest{})
	if err != nil {
		t.Fatal(err)
	}
	log := &eventLog{}
	go func() {
		for {
			r, err := stream.Recv()
			if err != nil {
				return
			}
			if e := r.GetEvent(); e != nil {
				log.add(e)
			}
		}
	}()
	return log
}

// TestRunTimingReloadKeepsVerdicts is issue 10's reproduction on the real
// daemon: a healthy local service whose check changes only its timing
// (rise 3 -> 4, and interval, timeout, fall) is reloaded by SIGHUP. No
// health event, no withdraw: the backend stays up through the reload and the
// probes after it.
func TestRunTimingReloadKeepsVerdicts(t *testing.T) {
	bin := buildDaemon(t)
	dir := t.TempDir()
	_, port := okServer(t)

	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfgPath := filepath.Join(dir, "directord.yaml")
	before := timingReloadConfig(dir, metrics, port, "{ type: http, path: /, interval: 200ms, timeout: 100ms, rise: 3, fall: 2 }")
	if err := os.WriteFile(cfgPath, []byte(before), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	d := startDaemon(t, bin, cfgPath, &logs)
	advertised := `directord_vip_advertised{vip="127.0.0.10"} 1`
	waitFor(t, "the VIP to be advertised", 10*time.Second, func() bool { return strings.Contains(scrape(metrics), advertised) })
	events := watchEvents(t, filepath.Join(dir, "d.sock"))

	after := timingReloadConfig(dir, metrics, port, "{ type: http, path: /, interval: 300ms, timeout: 150ms, rise: 4, fall: 3 }")
	if err := os.WriteFile(cfgPath, []byte(after), 0o644); err != nil {
		t.Fatal(err)
	}
	d.signal(syscall.SIGHUP)
	var reloadSeq uint64
	waitFor(t, "the reload event", 5*time.Second, func() bool {
		for _, e := range events.all() {
			if e.GetKind() == directorv1.EventKind_EVENT_KIND_RELOAD {
				reloadSeq = e.GetSeq()
				return true
			}
		}
		return false
	})
	// Enough probes with the new timing for the old bug (back through rise
	// 4, withdrawn meanwhile) to have shown.
	base := httpSuccesses(scrape(metrics))
	waitFor(t, "8 probes after the reload", 10*time.Second, func() bool { return httpSuccesses(scrape(metrics)) >= base+8 })

	for _, e := range events.all() {
		if e.GetSeq() < reloadSeq {
			continue
		}
		switch e.GetKind() {
		case directorv1.EventKind_EVENT_KIND_HEALTH, directorv1.EventKind_EVENT_KIND_VIP:
			t.Errorf("event after a timing-only reload: %s %s: %s -> %s (%s)",
				e.GetKind(), e.GetSubject(), e.GetFrom(), e.GetTo(), e.GetReason())
		}
	}
	page := scrape(metrics)
	if !strings.Contains(page, advertised) || !strings.Contains(page, "directord_config_version 2") {
		t.Errorf("after the reload: want version 2 with the VIP advertised")
	}
	if !strings.Contains(page, "directord_health_probes_demanded_per_second 3.3") {
		t.Errorf("the daemon does not export its health checker's load (one target every 300ms)")
	}
	_, afterReload, _ := strings.Cut(logs.String(), "configuration loaded")
	if strings.Contains(afterReload, "health state changed") || strings.Contains(afterReload, "VIP withdrawn") {
		t.Errorf("a health change or a withdraw was logged after the reload")
	}
}
