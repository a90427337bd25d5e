//go:build !vm

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/anycast-director/director/notify"
)

// hookReceiver is a real HTTP receiver for webhooks that answers 503 until
// it is brought up. It holds its port from the start: a port reserved and
// released for a receiver started later was taken meanwhile by another test
// process's HTTP server, which answered the daemon's retry with a 200.
type hookReceiver struct {
	addr string
	up   atomic.Bool
	mu   sync.Mutex
	msgs []notify.Message
}

// newHookReceiver listens on a port of its own, down until bringUp.
func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &hookReceiver{addr: lis.Addr().String()}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !h.up.Load() {
			http.Error(w, "receiver down", http.StatusServiceUnavailable)
			return
		}
		var m notify.Message
		body, _ := io.ReadAll(r.Body)
		if err := json.Unmarshal(body, &m); err == nil {
			h.mu.Lock()
			h.msgs = append(h.msgs, m)
			h.mu.Unlock()
		}
	})}
	go srv.Serve(lis)
	t.Cleanup(func() { srv.Close() })
	return h
}

// bringUp makes the receiver accept notifications.
func (h *hookReceiver) bringUp() { h.up.Store(true) }

func (h *hookReceiver) lines() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	var out []string
	for _, m := range h.msgs {
		for _, e := range m.Entries {
			out = append(out, e.Line())
		}
	}
	return out
}

// TestRunNotifies: the real daemon notifies a webhook when a real server
// goes down and its VIP is withdrawn. The receiver is down (it answers
// 503) when that happens; the daemon keeps retrying (and keeps serving: the VIP's state
// follows health meanwhile), and the receiver gets the changes once it is
// back.
func TestRunNotifies(t *testing.T) {
	bin := buildDaemon(t)
	dir := t.TempDir()
	backend, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := backend.Addr().(*net.TCPAddr).Port
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, "ok") })}
	go srv.Serve(backend)
	defer srv.Close()

	hook := newHookReceiver(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	vip := fmt.Sprintf("127.78.%d.10", os.Getpid()%250+1)
	cfg := fmt.Sprintf(`director: { name: n1, announce: none, hold_down: 200ms, drain_delay: 1s, graceful_shutdown: 0s, linger: 0s, state_dir: %[1]s/state }
api: { socket: %[1]s/d.sock }
metrics: { listen: %s }
services:
  - name: web
    vip: %s
    port: 80
    forwarding: local
    health: { type: http, path: /, interval: 200ms, timeout: 100ms, rise: 1, fall: 2 }
    backends: [ { address: 127.0.0.1, port: %d } ]
notify:
  group_window: 300ms
  webhooks:
    - { url: "http://%s/hook", backoff: 100ms, max_attempts: 100 }
`, dir, metrics, vip, port, hook.addr)
	cfgPath := filepath.Join(dir, "directord.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	cmd := exec.Command(bin, "run", "-config", cfgPath)
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("directord log:\n%s", logs.String())
		}
	}()
	advertised := fmt.Sprintf(`directord_vip_advertised{vip="%s"} `, vip)
	waitFor(t, "the VIP advertised", 10*time.Second, func() bool { return strings.Contains(scrape(metrics), advertised+"1") })

	srv.Close()
	waitFor(t, "the VIP withdrawn", 5*time.Second, func() bool { return strings.Contains(scrape(metrics), advertised+"0") })
	waitFor(t, "a failed delivery to the receiver that is down", 10*time.Second, func() bool {
		return strings.Contains(logs.String(), "notification failed; retrying")
	})
	channel := fmt.Sprintf(`{channel="webhook http://%s/hook"}`, hook.addr)
	waitFor(t, "the metrics to show the channel failing and retrying", 10*time.Second, func() bool {
		page := scrape(metrics)
		return strings.Contains(page, "directord_notification_failing"+channel+" 1") &&
			metricValue(page, "directord_notification_retries_total"+channel) >= 1 &&
			metricValue(page, "directord_notifications_sent_total"+channel) == 0
	})

	hook.bringUp()
	// The backend's line ends down: "up -> down", or, when its state
	// changed more than once within one group window (a first probe that
	// timed out on a busy machine: unknown, down, up, down), "unknown ->
	// down (3 changes)"; CI final8 got the second.
	backendDown := func(line string) bool {
		return strings.HasPrefix(line, fmt.Sprintf("backend http 127.0.0.1:%d: ", port)) &&
			(strings.Contains(line, " -> down on n1") || strings.Contains(line, " -> down ("))
	}
	// The VIP's line says it ended withdrawn: "advertised -> withdrawn", or,
	// when it was advertised and withdrawn within one group window (a quick
	// machine), "withdrawn, flapped (2 changes, now withdrawn)".
	vipWithdrawn := func(line string) bool {
		return strings.HasPrefix(line, fmt.Sprintf("vip %s: ", vip)) &&
			(strings.Contains(line, "-> withdrawn on n1") || strings.Contains(line, "now withdrawn) on n1")) &&
			strings.HasSuffix(line, "(below min_healthy 0/1)")
	}
	defer func() {
		if t.Failed() {
			t.Logf("the receiver got: %q", hook.lines())
		}
	}()
	// The first delivery (start-up changes) has been failing since the
	// daemon started, with a doubling backoff capped at a minute: on a busy
	// machine the next retry after the receiver is back can be tens of
	// seconds away. The bound is that cap, not a guess at the load.
	waitFor(t, "the notification", 75*time.Second, func() bool {
		lines := hook.lines()
		return slices.ContainsFunc(lines, backendDown) && slices.ContainsFunc(lines, vipWithdrawn)
	})
	waitFor(t, "the metrics to show the deliveries and the channel no longer failing", 10*time.Second, func() bool {
		page := scrape(metrics)
		return strings.Contains(page, "directord_notification_failing"+channel+" 0") &&
			metricValue(page, "directord_notifications_sent_total"+channel) >= 1
	})
}

// metricValue returns the value of the sample named exactly series (name
// and labels) in a metrics page, or -1 when the page has none.
func metricValue(page, series string) float64 {
	for _, line := range strings.Split(page, "\n") {
		if v, ok := strings.CutPrefix(line, series+" "); ok {
			var f float64
			if _, err := fmt.Sscan(v, &f); err == nil {
				return f
			}
		}
	}
	return -1
}
