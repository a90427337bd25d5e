//go:build linux && privileged

package bgp

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/netlab"
)

// The privileged tests run real FRR 8.4 (zebra, bgpd, bfdd) in a router
// namespace and one speaker per director namespace, each director on its own
// veth link to the router, as lab/topology/tests/router-directors.clab.yml
// lays them out:
//
//	rtr eth<k> 10.0.k.1/24 fd00:k::1/64  <->  d<k> eth1 10.0.k.11/24 fd00:k::11/64
//
// FRR's configuration is written by hand here (static neighbors with
// update-source, as NOTES.md found stable with GoBGP's BFD); the daemon-level
// tests use the one routing/routerconfig generates.

const (
	labRouterASN   = 65000
	labDirectorASN = 65100
	vip4           = "198.18.0.10"
	vip6           = "2001:db8:100::10"
)

// labOptions shape a BGP lab.
type labOptions struct {
	directors int
	bfd       bool // BFD 100 ms x 3 on every session
	ipv6      bool // an IPv6 session per director besides the IPv4 one
	// routerPasswords are the router's MD5 passwords per director (1-based).
	routerPasswords map[int]string
	// routerNeighbor holds extra neighbor options per director, such as
	// "ttl-security hops 1".
	routerNeighbor map[int]string
	// extraFRR is appended to the router configuration.
	extraFRR string
}

// bgpLab is a router and its directors.
type bgpLab struct {
	t    testing.TB
	rtr  *netlab.NS
	frr  *netlab.FRR
	dirs []*netlab.NS
	opts labOptions
}

// director k's addresses (k is 1-based).
func dirAddr4(k int) string { return fmt.Sprintf("10.0.%d.11", k) }
func dirAddr6(k int) string { return fmt.Sprintf("fd00:%d::11", k) }
func rtrAddr4(k int) string { return fmt.Sprintf("10.0.%d.1", k) }
func rtrAddr6(k int) string { return fmt.Sprintf("fd00:%d::1", k) }

// newBGPLab deploys the router and its directors and starts FRR.
func newBGPLab(t testing.TB, o labOptions) *bgpLab {
	t.Helper()
	topo := netlab.Deploy(t, "router-directors")
	l := &bgpLab{t: t, opts: o, rtr: topo.Node("rtr")}
	for k := 1; k <= o.directors; k++ {
		l.dirs = append(l.dirs, topo.Node(fmt.Sprintf("d%d", k)))
	}
	l.frr = l.rtr.StartFRR(l.frrConfig(), "bgpd", "bfdd")
	return l
}

// frrConfig is the router's hand-written configuration.
func (l *bgpLab) frrConfig() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	if l.opts.bfd {
		w("bfd\n profile fast\n  transmit-interval 100\n  receive-interval 100\n  detect-multiplier 3\n exit\nexit")
	}
	w("router bgp %d", labRouterASN)
	w(" bgp router-id 10.0.0.1")
	w(" no bgp ebgp-requires-policy")
	w(" no bgp network import-check")
	w(" bgp bestpath as-path multipath-relax")
	w(" timers bgp 1 3")
	neighbor := func(k int, addr, src string) {
		w(" neighbor %s remote-as %d", addr, labDirectorASN)
		w(" neighbor %s update-source %s", addr, src)
		w(" neighbor %s timers connect 1", addr)
		w(" neighbor %s advertisement-interval 0", addr)
		if l.opts.bfd {
			w(" neighbor %s bfd profile fast", addr)
		}
		if pw := l.opts.routerPasswords[k]; pw != "" {
			w(" neighbor %s password %s", addr, pw)
		}
		if extra := l.opts.routerNeighbor[k]; extra != "" {
			w(" neighbor %s %s", addr, extra)
		}
	}
	for k := 1; k <= l.opts.directors; k++ {
		neighbor(k, dirAddr4(k), rtrAddr4(k))
		if l.opts.ipv6 {
			neighbor(k, dirAddr6(k), rtrAddr6(k))
		}
	}
	w(" address-family ipv4 unicast")
	w("  maximum-paths 8")
	for k := 1; k <= l.opts.directors && l.opts.ipv6; k++ {
		w("  no neighbor %s activate", dirAddr6(k))
	}
	w(" exit-address-family")
	if l.opts.ipv6 {
		w(" address-family ipv6 unicast")
		w("  maximum-paths 8")
		for k := 1; k <= l.opts.directors; k++ {
			w("  neighbor %s activate", dirAddr6(k))
		}
		w(" exit-address-family")
	}
	w("exit")
	b.WriteString(l.opts.extraFRR)
	return b.String()
}

// speakerPeer is director k's neighbor entry for the router's IPv4 address.
func (l *bgpLab) speakerPeer(k int) config.Peer {
	p := config.Peer{
		Address:            netip.MustParseAddr(rtrAddr4(k)),
		ASN:                labRouterASN,
		LocalAddress:       netip.MustParseAddr(dirAddr4(k)),
		HoldTime:           3 * time.Second,
		Keepalive:          time.Second,
		ConnectRetry:       time.Second,
		IdleHoldAfterReset: time.Second,
		IPv4:               true,
	}
	if l.opts.bfd {
		p.BFD = &config.BFD{MinInterval: 100 * time.Millisecond, Multiplier: 3}
	}
	return p
}

// speakerConfig is director k's speaker configuration.
func (l *bgpLab) speakerConfig(k int) config.BGP {
	cfg := config.BGP{
		ASN:        labDirectorASN,
		RouterID:   netip.MustParseAddr(dirAddr4(k)),
		ListenPort: 179,
		Peers:      []config.Peer{l.speakerPeer(k)},
	}
	if l.opts.ipv6 {
		p6 := l.speakerPeer(k)
		p6.Address, p6.LocalAddress = netip.MustParseAddr(rtrAddr6(k)), netip.MustParseAddr(dirAddr6(k))
		p6.IPv4, p6.IPv6 = false, true
		cfg.Peers = append(cfg.Peers, p6)
	}
	return cfg
}

// startSpeaker starts director k's speaker; edit may change its config.
func (l *bgpLab) startSpeaker(k int, edit func(*config.BGP)) *speakerProc {
	l.t.Helper()
	cfg := l.speakerConfig(k)
	if edit != nil {
		edit(&cfg)
	}
	allowed := []netip.Prefix{netip.MustParsePrefix(vip4 + "/32"), netip.MustParsePrefix(vip6 + "/128")}
	return startHelper(l.t, l.dirs[k-1], helperConfig{BGP: cfg, Allowed: allowed})
}

// gateways returns the router's FIB next hops for prefix.
func (l *bgpLab) gateways(prefix string) []string {
	l.t.Helper()
	gws, err := l.rtr.Gateways(prefix)
	if err != nil {
		l.t.Fatal(err)
	}
	return gws
}

// waitGateways waits until the router's FIB has exactly want as next hops
// for prefix and returns how long that took.
func (l *bgpLab) waitGateways(timeout time.Duration, prefix string, want ...string) time.Duration {
	l.t.Helper()
	slices.Sort(want)
	d, err := netlab.Wait(timeout, 10*time.Millisecond, func() error {
		got, err := l.rtr.Gateways(prefix)
		if err != nil {
			return err
		}
		if !slices.Equal(got, want) && !(len(got) == 0 && len(want) == 0) {
			return fmt.Errorf("next hops of %s are %v, want %v", prefix, got, want)
		}
		return nil
	})
	if err != nil {
		l.t.Fatalf("router FIB: %v\n%s", err, l.debug())
	}
	return d
}

// neighbor returns the router's view of one neighbor.
func (l *bgpLab) neighbor(addr string) (netlab.BGPNeighbor, error) {
	nb, err := l.frr.BGPNeighbors()
	if err != nil {
		return netlab.BGPNeighbor{}, err
	}
	n, ok := nb[addr]
	if !ok {
		return netlab.BGPNeighbor{}, fmt.Errorf("router has no neighbor %s", addr)
	}
	return n, nil
}

// established fails unless the router's session with addr is established.
func (l *bgpLab) established(addr string) error {
	n, err := l.neighbor(addr)
	if err != nil {
		return err
	}
	if n.State != "Established" {
		return fmt.Errorf("neighbor %s is %s (last reset: %s)", addr, n.State, n.LastReset)
	}
	return nil
}

// debug renders the router's view for a failure message.
func (l *bgpLab) debug() string {
	out, _ := l.frr.Vtysh("show bgp summary", "show bfd peers brief")
	return out
}

// waitBFDStable waits until the router reports BFD up for a neighbor, and
// has for at least d (a transient up on a loaded machine is not enough to
// start a measurement).
func (l *bgpLab) waitBFDStable(addr string, d time.Duration) {
	l.t.Helper()
	var since time.Time
	netlab.MustWait(l.t, 15*time.Second, "BFD up on the router", func() error {
		n, err := l.neighbor(addr)
		if err != nil {
			return err
		}
		if n.BFD == nil || n.BFD.Status != "Up" {
			since = time.Time{}
			return fmt.Errorf("bfd %+v", n.BFD)
		}
		if since.IsZero() {
			since = time.Now()
		}
		if time.Since(since) < d {
			return fmt.Errorf("bfd up for %s only", time.Since(since))
		}
		return nil
	})
}
