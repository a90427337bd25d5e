//go:build !vm

package main

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// endlessHeaderBackend answers every request with a status line and then
// header lines without end (up to 256 MiB per connection), the backend of
// issue 12 that drove directord to 0.98-1.9 GB.
func endlessHeaderBackend(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	chunk := []byte(strings.Repeat("X-Padding: "+strings.Repeat("a", 100)+"\r\n", 512))
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				_, _ = bufio.NewReader(c).ReadString('\n')
				if _, err := c.Write([]byte("HTTP/1.1 200 OK\r\n")); err != nil {
					return
				}
				for sent := 0; sent < 256<<20; sent += len(chunk) {
					if _, err := c.Write(chunk); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().(*net.TCPAddr).Port
}

// peakRSS returns a process's peak resident set (VmHWM).
func peakRSS(t *testing.T, pid int) int64 {
	t.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB`).FindSubmatch(raw)
	if m == nil {
		t.Fatalf("no VmHWM in /proc/%d/status", pid)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// httpFailures reads directord_checks_total for failed http probes.
func httpFailures(page string) int {
	m := regexp.MustCompile(`(?m)^directord_checks_total\{result="failure",type="http"\} (\d+)`).FindStringSubmatch(page)
	if m == nil {
		return 0
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestRunHostileHTTPBackendBoundedRSS: a backend answering the http check
// with an endless header costs the real daemon a bounded amount of memory:
// its peak RSS over ten probes (interval 1 s, timeout 900 ms, as in issue
// 12) stays under 64 MiB. Before the header caps it reached 0.98-1.9 GB.
func TestRunHostileHTTPBackendBoundedRSS(t *testing.T) {
	bin := buildDaemon(t)
	dir := t.TempDir()
	port := endlessHeaderBackend(t)
	metrics := fmt.Sprintf("127.0.0.1:%d", freePort(t))
	cfg := filepath.Join(dir, "directord.yaml")
	yaml := timingReloadConfig(dir, metrics, port, "{ type: http, path: /, interval: 1s, timeout: 900ms, rise: 1, fall: 1 }")
	if err := os.WriteFile(cfg, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	var logs syncBuffer
	d := startDaemon(t, bin, cfg, &logs)
	waitFor(t, "10 failed http probes", 30*time.Second, func() bool { return httpFailures(scrape(metrics)) >= 10 })
	rss := peakRSS(t, d.pid())
	t.Logf("peak RSS after 10 probes of an endless-header backend: %.1f MiB", float64(rss)/(1<<20))
	if rss > 64<<20 {
		t.Errorf("peak RSS %.1f MiB, want under 64 MiB", float64(rss)/(1<<20))
	}
	if !strings.Contains(logs.String(), "response has more than 100 header lines") {
		t.Errorf("the log does not say why the check failed")
	}
}
