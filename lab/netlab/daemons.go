package netlab

import (
	"context"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/nslab"
)

// FRR is a set of FRR daemons running in one namespace, with their own
// folder (vty sockets, zserv socket, pid files) owned by the frr user.
type FRR struct {
	*nslab.FRR
	ns *NS
}

// BGPNeighbor is one entry of FRR's `show bgp neighbors json`.
type BGPNeighbor = nslab.BGPNeighbor

// BGPPath is one path of FRR's `show bgp <afi> unicast <prefix> json`.
type BGPPath = nslab.BGPPath

// StartFRR starts zebra and the given daemons ("bgpd", "bfdd", "ospfd",
// "staticd") as user frr in the namespace, then applies config (frr.conf
// syntax) through vtysh. The daemons are killed at cleanup.
func (ns *NS) StartFRR(config string, daemons ...string) *FRR {
	ns.t.Helper()
	f, err := nslab.StartFRR(context.Background(), ns.node, nslab.FRRSpec{Daemons: nslab.FRRDaemons(daemons...), Config: config})
	if err != nil {
		ns.t.Fatalf("netlab: %v", err)
	}
	return &FRR{FRR: f, ns: ns}
}

// Configure applies configuration commands (frr.conf syntax) to the running
// daemons through vtysh.
func (f *FRR) Configure(config string) {
	f.ns.t.Helper()
	if err := f.FRR.Configure(context.Background(), config); err != nil {
		f.ns.t.Fatalf("netlab: %v", err)
	}
}

// Vtysh runs vtysh commands and returns the output.
func (f *FRR) Vtysh(commands ...string) (string, error) {
	return f.FRR.Vtysh(context.Background(), commands...)
}

// VtyshJSON runs a "show ... json" command and decodes its output into v.
func (f *FRR) VtyshJSON(command string, v any) error {
	return f.FRR.VtyshJSON(context.Background(), command, v)
}

// BGPNeighbors returns the router's BGP neighbors by address.
func (f *FRR) BGPNeighbors() (map[string]BGPNeighbor, error) {
	return f.FRR.BGPNeighbors(context.Background())
}

// BGPRoute returns the router's paths for a prefix; none means the router
// does not know it.
func (f *FRR) BGPRoute(prefix string) ([]BGPPath, error) {
	return f.FRR.BGPRoute(context.Background(), prefix)
}

// BIRD is a BIRD daemon running in one namespace.
type BIRD struct {
	*nslab.BIRD
	ns *NS
}

// StartBIRD checks config with `bird -p`, starts BIRD with it in the
// namespace and waits until birdc reports it up. It is killed at cleanup.
func (ns *NS) StartBIRD(config string) *BIRD {
	ns.t.Helper()
	b, err := nslab.StartBIRD(context.Background(), ns.node, nslab.BIRDSpec{Config: config})
	if err != nil {
		ns.t.Fatalf("netlab: %v", err)
	}
	return &BIRD{BIRD: b, ns: ns}
}

// Birdc runs one birdc command and returns its output.
func (b *BIRD) Birdc(args ...string) (string, error) {
	return b.BIRD.Birdc(context.Background(), args...)
}

// Wait calls cond every interval until it returns nil or timeout passes. It
// returns how long that took, or the last error of cond once time is up.
func Wait(timeout, interval time.Duration, cond func() error) (time.Duration, error) {
	return nslab.Wait(context.Background(), timeout, interval, cond)
}

// MustWait is Wait with a 20 ms interval that fails the test on timeout,
// naming what it waited for.
func MustWait(t testing.TB, timeout time.Duration, what string, cond func() error) time.Duration {
	t.Helper()
	d, err := Wait(timeout, 20*time.Millisecond, cond)
	if err != nil {
		t.Fatalf("timed out waiting for %s: %v", what, err)
	}
	return d
}

// Hold checks cond every interval for the whole duration and returns the
// first error: "stays up for 10 s" rather than "is up now".
func Hold(d, interval time.Duration, cond func() error) error {
	return nslab.Hold(context.Background(), d, interval, cond)
}

// CPUTime returns the user plus system CPU time a process has used so far.
func CPUTime(pid int) (time.Duration, error) { return nslab.CPUTime(pid) }
