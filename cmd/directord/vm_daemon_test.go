//go:build linux && vm

package main

import (
	stdcmp "cmp"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/lab/netlab"
	directorv1 "github.com/anycast-director/director/proto/director/v1"
)

// Timers of the lab configuration, short for the emulated VM.
const (
	checkInterval = 400 * time.Millisecond
	checkFall     = 2
	drainDelay    = 2 * time.Second
	graceful      = 500 * time.Millisecond
	linger        = 500 * time.Millisecond
)

// Destinations and services as the kernel names them.
var (
	rsAddr = [3]string{labNet + ".11:80", labNet + ".12:80", labNet + ".13:80"}
	webKey = webVIP + ":80"
	tunKey = tunVIP + ":80"
)

// writeConfig renders the director's configuration: web is DR over all three
// real servers (weights 1, 2, 1) with mh and its flags spelled out, tun is
// IP-in-IP over the first tunBackends real servers with the defaults (mh
// with mh-fallback and mh-port, so a weight-0 backend's share of new flows
// goes elsewhere instead of being dropped).
func (l *vmLab) writeConfig(tunBackends int) {
	l.t.Helper()
	interval, timeout := stdcmp.Or(l.checkInterval, checkInterval), stdcmp.Or(l.checkTimeout, 300*time.Millisecond)
	var tun strings.Builder
	for i := range tunBackends {
		fmt.Fprintf(&tun, "      - { address: %s.%d }\n", labNet, 11+i)
	}
	fwd := ""
	if l.forwardingCheck {
		fwd = ", forwarding_check: true"
	}
	cfg := fmt.Sprintf(`director:
  name: vm1
  announce: none
  hold_down: 200ms
  drain_delay: %s
  resync_interval: 500ms
  graceful_shutdown: %s
  linger: %s
  state_dir: %s
api:
  socket: %s
metrics:
  listen: %s
services:
  - name: web
    vip: %s
    port: 80
    forwarding: dr
    scheduler: mh
    scheduler_flags: [mh-port, mh-fallback]
    health: { type: http, path: /, interval: %s, timeout: %s, rise: 2, fall: %d%s }
    backends:
      - { address: %s.11, weight: 1 }
      - { address: %s.12, weight: 2 }
      - { address: %s.13, weight: 1 }
  - name: tun
    vip: %s
    port: 80
    forwarding: tunnel
    health: { type: tcp, interval: %s, timeout: %s, rise: 2, fall: %d%s }
    backends:
%s`, drainDelay, graceful, linger, filepath.Join(filepath.Dir(l.sock), "state"), l.sock, metricsAddr, webVIP, interval, timeout, checkFall, fwd,
		labNet, labNet, labNet, tunVIP, interval, timeout, checkFall, fwd, tun.String())
	if err := os.WriteFile(l.cfgPath, []byte(cfg), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// startDaemon runs `directord run` in the director's namespace and waits
// until it serves its API.
func (l *vmLab) startDaemon() *netlab.Proc {
	l.t.Helper()
	p := l.director.Start("directord", []string{entryEnv + "=1"}, selfCommand(l.t, "run", "-config", l.cfgPath)...)
	l.t.Cleanup(func() {
		if l.t.Failed() {
			l.t.Logf("directord (pid %d) log:\n%s", p.PID, p.Output())
		}
	})
	if _, _, err := p.WaitOutput("directord running", 0, 30*time.Second); err != nil {
		l.t.Fatal(err)
	}
	return p
}

// waitKernel polls /proc/net/ip_vs until check passes and returns how long
// that took.
func waitKernel(t *testing.T, r *ipvsReader, what string, timeout time.Duration, check func(map[string]kernelService) error) time.Duration {
	t.Helper()
	took, err := netlab.Wait(timeout, 50*time.Millisecond, func() error {
		k, err := r.read()
		if err != nil {
			return err
		}
		return check(k)
	})
	if err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
	return took
}

// weightIs checks one destination's kernel weight; want -1 means absent.
func weightIs(svc, dest string, want int) func(map[string]kernelService) error {
	return func(k map[string]kernelService) error {
		d, ok := k[svc].dest(dest)
		switch {
		case want < 0 && ok:
			return fmt.Errorf("%s -> %s still present (weight %d)", svc, dest, d.Weight)
		case want >= 0 && !ok:
			return fmt.Errorf("%s -> %s absent; kernel has %v", svc, dest, k[svc])
		case want >= 0 && d.Weight != want:
			return fmt.Errorf("%s -> %s weight %d, want %d", svc, dest, d.Weight, want)
		}
		return nil
	}
}

// canonical is the kernel list directord must produce: descending address,
// so every director with the same backends builds the same mh table.
func canonical(fwd string, weights map[string]int) []kernelDest {
	var out []kernelDest
	for _, a := range slices.Backward(rsAddr[:]) {
		if w, ok := weights[a]; ok {
			out = append(out, kernelDest{Addr: a, Fwd: fwd, Weight: w})
		}
	}
	return out
}

// order returns a service's destinations without the connection counts.
func order(k map[string]kernelService, svc string) []kernelDest {
	var out []kernelDest
	for _, d := range k[svc].Dests {
		out = append(out, kernelDest{Addr: d.Addr, Fwd: d.Fwd, Weight: d.Weight})
	}
	return out
}

// fingerprintOf computes, with the ipvs package's own function, the
// fingerprint of a kernel list, to compare with what status reports.
func fingerprintOf(t *testing.T, scheduler string, flags []string, dests []kernelDest) string {
	t.Helper()
	s := ipvs.Service{Scheduler: scheduler, Flags: flags}
	for _, d := range dests {
		ap := netip.MustParseAddrPort(d.Addr)
		fwd := map[string]ipvs.Forwarding{"Route": ipvs.DirectRoute, "Tunnel": ipvs.Tunnel, "Masq": ipvs.Masquerade}[d.Fwd]
		s.Destinations = append(s.Destinations, ipvs.Destination{Address: ap.Addr(), Port: ap.Port(), Weight: d.Weight, Forwarding: fwd})
	}
	return ipvs.Fingerprint(s)
}

// waitConns waits until ipvsadm shows at least min connections for key
// (the kernel folds its per-CPU counters every 2 s) and returns the counters.
func (l *vmLab) waitConns(key string, atLeast uint64) ipvsStats {
	l.t.Helper()
	var st ipvsStats
	_, err := netlab.Wait(8*time.Second, 300*time.Millisecond, func() error {
		st = l.ipvsadmStats()[key]
		if st.Conns < atLeast {
			return fmt.Errorf("%s has %d connections, want at least %d", key, st.Conns, atLeast)
		}
		return nil
	})
	if err != nil {
		l.t.Fatal(err)
	}
	return st
}

// weightSampler records the kernel state of the lab's services every 50 ms
// while the daemon restarts: whether a service was ever missing (re-created),
// each destination's lowest weight, and from when to when every destination
// of a service had weight 0 (no real server for a new flow).
type weightSampler struct {
	stop    chan struct{}
	done    chan struct{}
	mu      sync.Mutex
	samples int
	missing map[string]int
	minW    map[string]int
	allZero map[string][2]time.Time // first and last sample with every weight 0
	errs    []error
}

func sampleWeights(r *ipvsReader, services ...string) *weightSampler {
	s := &weightSampler{stop: make(chan struct{}), done: make(chan struct{}), missing: map[string]int{},
		minW: map[string]int{}, allZero: map[string][2]time.Time{}}
	go func() {
		defer close(s.done)
		tick := time.NewTicker(50 * time.Millisecond)
		defer tick.Stop()
		for {
			k, err := r.read()
			now := time.Now()
			s.mu.Lock()
			s.samples++
			if err != nil {
				s.errs = append(s.errs, err)
			}
			for _, svc := range services {
				ks, ok := k[svc]
				if !ok {
					s.missing[svc]++
				}
				zero := len(ks.Dests) > 0
				for _, d := range ks.Dests {
					id := svc + " -> " + d.Addr
					if w, seen := s.minW[id]; !seen || d.Weight < w {
						s.minW[id] = d.Weight
					}
					zero = zero && d.Weight == 0
				}
				if zero {
					span := s.allZero[svc]
					if span[0].IsZero() {
						span[0] = now
					}
					span[1] = now
					s.allZero[svc] = span
				}
			}
			s.mu.Unlock()
			select {
			case <-s.stop:
				return
			case <-tick.C:
			}
		}
	}()
	return s
}

func (s *weightSampler) finish() {
	close(s.stop)
	<-s.done
}

// checkSysctls compares the IPVS sysctls in status with the kernel's values
// in the director's namespace, pins the flow-continuity ones, and checks
// that another namespace kept the kernel defaults (the daemon set them).
func (l *vmLab) checkSysctls(s *directorv1.GetStatusResponse) {
	l.t.Helper()
	got := s.GetSysctls()
	want := map[string]int64{"sloppy_tcp": 1, "sloppy_sctp": 1, "schedule_icmp": 1, "expire_nodest_conn": 0,
		"conn_reuse_mode": 3, "expire_quiescent_template": 1, "conntrack": 0}
	for name, v := range want {
		if g, ok := got[name]; !ok || g != v {
			l.t.Errorf("status sysctl %s = %d (present %t), want %d", name, g, ok, v)
		}
	}
	if len(got) < len(want) {
		l.t.Errorf("status lists %d IPVS sysctls, want at least %d: %v", len(got), len(want), got)
	}
	for name, v := range got {
		if k := sysctlIn(l.t, l.director, "net.ipv4.vs."+name); k != fmt.Sprint(v) {
			l.t.Errorf("sysctl net.ipv4.vs.%s: status says %d, the director's kernel has %s", name, v, k)
		}
	}
	for name, def := range map[string]string{"sloppy_tcp": "0", "schedule_icmp": "0", "expire_quiescent_template": "0"} {
		if k := sysctlIn(l.t, l.client, "net.ipv4.vs."+name); k != def {
			l.t.Errorf("client namespace net.ipv4.vs.%s = %s, want the kernel default %s (only the director's is set)", name, k, def)
		}
	}
}

// phase logs the start of a phase with the time since the test began.
func phase(t *testing.T, start time.Time, name string) {
	t.Helper()
	t.Logf("--- %5.1fs %s", time.Since(start).Seconds(), name)
}

// keysOf lists a map's keys, sorted, for messages.
func keysOf[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// cmpKernel compares a service's kernel list with want.
func cmpKernel(t *testing.T, when string, k map[string]kernelService, svc string, want []kernelDest) {
	t.Helper()
	if diff := cmp.Diff(want, order(k, svc)); diff != "" {
		t.Errorf("%s: %s kernel list (-want +got):\n%s", when, svc, diff)
	}
}

// signalDaemon sends sig and fails the test if the daemon is gone.
func signalDaemon(t *testing.T, p *netlab.Proc, sig syscall.Signal) {
	t.Helper()
	if err := p.Signal(sig); err != nil {
		t.Fatal(err)
	}
}

// flowProbe opens new connections through a VIP one after the other until
// stopped, and records how many failed and how many needed a SYN
// retransmission (took a second or more): new flows that found no real
// server at first.
type flowProbe struct {
	stop    chan struct{}
	done    chan struct{}
	ok, bad int
	slow    []time.Duration
	lastErr error
}

func (l *vmLab) probeFlows(vip string) *flowProbe {
	p := &flowProbe{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(p.done)
		for {
			select {
			case <-p.stop:
				return
			default:
			}
			began := time.Now()
			_, err := l.get(vip)
			took := time.Since(began)
			switch {
			case err != nil:
				p.bad++
				p.lastErr = err
			case took >= 900*time.Millisecond:
				p.ok++
				p.slow = append(p.slow, took.Round(time.Millisecond))
			default:
				p.ok++
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	return p
}

func (p *flowProbe) finish() {
	close(p.stop)
	<-p.done
}
