//go:build linux && vm

package main

import (
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// TestVMForwardingCheck: rs3 answers on its own address but was never
// prepared for the VIPs (no `directord realserver add`). With plain checks
// it is up, and the flows IPVS sends it go nowhere (the control). With
// forwarding_check it is marked down in both services, direct routing and
// IP-in-IP, with a reason that says what to do, and gets no traffic; once
// prepared it comes back.
func TestVMForwardingCheck(t *testing.T) {
	l := newVMLab(t)
	rs3 := l.rs[2]
	state := filepath.Join(l.dir, rs3.name+"-state")
	for _, vip := range []string{webVIP, tunVIP} {
		if out, errOut, code := directordIn(t, rs3.ns, "realserver", "remove", vip, "-state-dir", state); code != exitOK {
			t.Fatalf("realserver remove %s in rs3: exit %d: %s %s", vip, code, out, errOut)
		}
	}
	l.writeConfig(3)
	d := l.startDaemon()
	l.waitStatus("rs3 up with plain checks", 30*time.Second, func(s *directorv1.GetStatusResponse) error {
		for _, svc := range []string{"web", "tun"} {
			if st := statusBackend(s, svc, rs3.ip).GetHealth().GetState(); st != directorv1.HealthState_HEALTH_STATE_UP {
				return fmt.Errorf("%s rs3 is %s", svc, st)
			}
		}
		return nil
	})
	failed, _ := l.quickSpread(webVIP, 24)
	t.Logf("control, plain checks: %d of 24 requests to the DR VIP failed (those sent to rs3)", failed)
	if failed == 0 {
		t.Fatalf("with plain checks no request failed: rs3 is not broken, the test shows nothing")
	}

	l.forwardingCheck = true
	l.writeConfig(3)
	signalDaemon(t, d, syscall.SIGHUP)
	s := l.waitStatus("rs3 down by the forwarding check", 30*time.Second, func(s *directorv1.GetStatusResponse) error {
		for _, svc := range []string{"web", "tun"} {
			b := statusBackend(s, svc, rs3.ip)
			if b.GetHealth().GetState() != directorv1.HealthState_HEALTH_STATE_DOWN {
				return fmt.Errorf("%s rs3 is %s (%s)", svc, b.GetHealth().GetState(), b.GetHealth().GetLastError())
			}
		}
		for _, svc := range []string{"web", "tun"} {
			for _, b := range statusService(s, svc).GetBackends() {
				if b.GetAddress() != rs3.ip && b.GetHealth().GetState() != directorv1.HealthState_HEALTH_STATE_UP {
					return fmt.Errorf("%s %s is %s (%s)", svc, b.GetAddress(), b.GetHealth().GetState(), b.GetHealth().GetLastError())
				}
			}
		}
		return nil
	})
	for _, svc := range []string{"web", "tun"} {
		msg := statusBackend(s, svc, rs3.ip).GetHealth().GetLastError()
		t.Logf("%s rs3: %s", svc, msg)
		if !strings.Contains(msg, "forwarding check") || !strings.Contains(msg, "directord realserver add") {
			t.Errorf("%s rs3's reason %q does not say what failed and what to do", svc, msg)
		}
	}
	if !strings.Contains(statusBackend(s, "tun", rs3.ip).GetHealth().GetLastError(), "IP-in-IP") {
		t.Errorf("the tunnel service's reason does not name IP-in-IP")
	}
	for _, key := range []string{webKey, tunKey} {
		if dests := l.ipvsadm()[key].Dests; !containsDest(dests, rsAddr[2]+" ", " 0") {
			t.Errorf("%s: rs3 not at weight 0: %v", key, dests)
		}
	}
	for _, vip := range []string{webVIP, tunVIP} {
		got := l.spread(vip, 40)
		if got["rs3"] != 0 || got["rs1"] == 0 {
			t.Errorf("%s with the forwarding check: answers %v, want none from rs3", vip, got)
		}
	}
	if t.Failed() {
		// Once (CI at f497cf3) 2 of 40 requests timed out with rs3 at
		// weight 0: the connection table says where IPVS sent them.
		t.Logf("IPVS after the requests:\n%s\nconnections:\n%s", l.director.MustRun("ipvsadm", "-Ln"), l.director.MustRun("ipvsadm", "-Lnc"))
	}

	// Prepared, rs3 passes and serves again.
	for _, vip := range []string{webVIP, tunVIP} {
		if out, errOut, code := directordIn(t, rs3.ns, "realserver", "add", vip, "-state-dir", state); code != exitOK {
			t.Fatalf("realserver add %s in rs3: exit %d: %s %s", vip, code, out, errOut)
		}
	}
	l.waitStatus("rs3 up once prepared", 30*time.Second, func(s *directorv1.GetStatusResponse) error {
		for _, svc := range []string{"web", "tun"} {
			if st := statusBackend(s, svc, rs3.ip).GetHealth().GetState(); st != directorv1.HealthState_HEALTH_STATE_UP {
				return fmt.Errorf("%s rs3 is %s", svc, st)
			}
		}
		return nil
	})
	if got := l.spread(webVIP, 40); got["rs3"] == 0 {
		t.Errorf("prepared rs3 got no traffic: %v", got)
	}
}

// quickSpread sends n requests to vip with a 1 s timeout each, for a real
// server that drops what it gets, and returns how many failed and who
// answered the others.
func (l *vmLab) quickSpread(vip string, n int) (failed int, got map[string]int) {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{
		DialContext: nsDialer(nsPath(l.client)), DisableKeepAlives: true}}
	defer c.CloseIdleConnections()
	got = map[string]int{}
	for range n {
		resp, err := c.Get(fmt.Sprintf("http://%s:%d/", vip, servicePort))
		if err != nil {
			failed++
			continue
		}
		var a answer
		var body strings.Builder
		buf := make([]byte, 256)
		k, _ := resp.Body.Read(buf)
		body.Write(buf[:k])
		resp.Body.Close()
		if a, err = parseAnswer(body.String()); err == nil {
			got[a.server]++
		}
	}
	return failed, got
}

// containsDest reports whether one of dests starts with prefix and ends
// with suffix ("10.77.0.13:80 " ... " 0").
func containsDest(dests []string, prefix, suffix string) bool {
	for _, d := range dests {
		if strings.HasPrefix(d, prefix) && strings.HasSuffix(d, suffix) {
			return true
		}
	}
	return false
}
