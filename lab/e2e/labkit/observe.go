package labkit

import (
	"bufio"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anycast-director/director/lab/e2e/traffic"
	"github.com/anycast-director/director/lab/runner"
)

// NextHops returns the sorted gateways of the router's route to vip (none
// when there is no route), read with ip -j from outside the node.
func NextHops(ctx context.Context, lab *runner.Lab, router, vip string) ([]string, error) {
	out, err := exec.CommandContext(ctx, "ip", "-j", "-n", lab.NetNS(router), "route", "show", vip).Output()
	if err != nil {
		return nil, fmt.Errorf("ip route show %s in %s: %w", vip, router, err)
	}
	if strings.TrimSpace(string(out)) == "" {
		return nil, nil
	}
	var routes []struct {
		Gateway  string `json:"gateway"`
		NextHops []struct {
			Gateway string `json:"gateway"`
		} `json:"nexthops"`
	}
	if err := json.Unmarshal(out, &routes); err != nil {
		return nil, fmt.Errorf("decode ip -j route: %w: %s", err, out)
	}
	var gws []string
	for _, r := range routes {
		if r.Gateway != "" {
			gws = append(gws, r.Gateway)
		}
		for _, nh := range r.NextHops {
			gws = append(gws, nh.Gateway)
		}
	}
	slices.Sort(gws)
	return gws, nil
}

// WaitNextHops polls the router's route every 50 ms until its next hops are
// exactly want (sorted; none for no route) and returns how long that took.
func WaitNextHops(ctx context.Context, lab *runner.Lab, router, vip string, want []string, timeout time.Duration) (time.Duration, error) {
	want = slices.Sorted(slices.Values(want))
	start := time.Now()
	var got []string
	var err error
	for {
		got, err = NextHops(ctx, lab, router, vip)
		if err == nil && slices.Equal(got, want) {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), fmt.Errorf("route to %s on %s: next hops %v after %s, want %v (%v)", vip, router, got, timeout, want, err)
		}
		select {
		case <-ctx.Done():
			return time.Since(start), ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// IPVSService is one virtual service as /proc/net/ip_vs shows it.
type IPVSService struct {
	Proto     string
	Addr      netip.AddrPort
	Scheduler string
	Dests     []IPVSDest
}

// IPVSDest is one real server of a service.
type IPVSDest struct {
	Addr                   netip.AddrPort
	Forward                string
	Weight                 int
	ActiveConn, InActConn  int
	Conns, InPkts, InBytes uint64 // from ipvsadm --stats only
}

// Dest returns the destination with that address, or nil.
func (s IPVSService) Dest(addr string) *IPVSDest {
	for i := range s.Dests {
		if s.Dests[i].Addr.String() == addr {
			return &s.Dests[i]
		}
	}
	return nil
}

// ReadIPVS reads a node's IPVS table from /proc/PID/net/ip_vs of a process
// in the node (lab.PID), starting nothing: cheap enough to poll.
func ReadIPVS(lab *runner.Lab, node string) (map[string]IPVSService, error) {
	pid, err := lab.PID(node)
	if err != nil {
		return nil, err
	}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/net/ip_vs", pid))
	if err != nil {
		return nil, fmt.Errorf("IPVS table of %s: %w", node, err)
	}
	return ParseProcIPVS(string(data))
}

// ParseProcIPVS parses /proc/net/ip_vs (IPv4 services; addresses in hex).
func ParseProcIPVS(data string) (map[string]IPVSService, error) {
	out := map[string]IPVSService{}
	var cur *IPVSService
	flush := func() {
		if cur != nil {
			out[cur.Addr.String()] = *cur
		}
	}
	sc := bufio.NewScanner(strings.NewReader(data))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 3 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP"):
			flush()
			ap, err := hexAddrPort(f[1])
			if err != nil {
				return nil, err
			}
			cur = &IPVSService{Proto: f[0], Addr: ap, Scheduler: f[2]}
		case len(f) >= 6 && f[0] == "->" && cur != nil:
			ap, err := hexAddrPort(f[1])
			if err != nil {
				continue // the header line "-> RemoteAddress:Port ..."
			}
			d := IPVSDest{Addr: ap, Forward: f[2]}
			d.Weight, _ = strconv.Atoi(f[3])
			d.ActiveConn, _ = strconv.Atoi(f[4])
			d.InActConn, _ = strconv.Atoi(f[5])
			cur.Dests = append(cur.Dests, d)
		}
	}
	flush()
	return out, nil
}

// hexAddrPort parses "C612000A:0050".
func hexAddrPort(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || len(a) != 8 {
		return netip.AddrPort{}, fmt.Errorf("%q is not an IPv4 hex address:port", s)
	}
	b, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, err
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return netip.AddrPortFrom(netip.AddrFrom4([4]byte(b)), uint16(port)), nil
}

// IPVSStats runs ipvsadm -Ln --stats --exact in a node: per service and
// destination, the connection, packet and byte counters.
func IPVSStats(ctx context.Context, lab *runner.Lab, node string) (map[string]IPVSService, error) {
	out, err := lab.Exec(ctx, node, "ipvsadm", "-Ln", "--stats", "--exact")
	if err != nil {
		return nil, err
	}
	return ParseIPVSStats(out)
}

// ParseIPVSStats parses ipvsadm -Ln --stats --exact.
func ParseIPVSStats(out string) (map[string]IPVSService, error) {
	res := map[string]IPVSService{}
	var cur *IPVSService
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 6 && (f[0] == "TCP" || f[0] == "UDP"):
			if cur != nil {
				res[cur.Addr.String()] = *cur
			}
			ap, err := netip.ParseAddrPort(f[1])
			if err != nil {
				return nil, fmt.Errorf("ipvsadm line %q: %w", line, err)
			}
			cur = &IPVSService{Proto: f[0], Addr: ap}
		case len(f) >= 6 && f[0] == "->" && cur != nil:
			ap, err := netip.ParseAddrPort(f[1])
			if err != nil {
				continue
			}
			d := IPVSDest{Addr: ap}
			d.Conns, _ = strconv.ParseUint(f[2], 10, 64)
			d.InPkts, _ = strconv.ParseUint(f[3], 10, 64)
			d.InBytes, _ = strconv.ParseUint(f[5], 10, 64)
			cur.Dests = append(cur.Dests, d)
		}
	}
	if cur != nil {
		res[cur.Addr.String()] = *cur
	}
	return res, nil
}

// Client is a labclient run in the client node.
type Client struct {
	p *runner.Proc
}

// StartClient starts labclient (mode http or hold, with its flags) in node.
func StartClient(lab *runner.Lab, node, name string, args ...string) (*Client, error) {
	p, err := lab.Start(node, name, append([]string{"labclient"}, args...)...)
	if err != nil {
		return nil, err
	}
	return &Client{p: p}, nil
}

// Proc is the labclient process (its LogPath receives -progress lines).
func (c *Client) Proc() *runner.Proc { return c.p }

// WaitReady waits for a hold run's READY line and returns how many
// connections opened and failed.
func (c *Client) WaitReady(timeout time.Duration) (opened, failed int, err error) {
	deadline := time.Now().Add(timeout)
	for {
		for _, line := range strings.Split(c.p.Output(), "\n") {
			if rest, ok := strings.CutPrefix(line, traffic.ReadyPrefix); ok {
				if _, err := fmt.Sscanf(rest, "opened=%d failed=%d", &opened, &failed); err != nil {
					return 0, 0, fmt.Errorf("READY line %q: %w", line, err)
				}
				return opened, failed, nil
			}
		}
		if c.p.Exited() {
			return 0, 0, fmt.Errorf("labclient exited before it was ready: %s", c.p.Output())
		}
		if time.Now().After(deadline) {
			return 0, 0, fmt.Errorf("labclient not ready after %s: %s", timeout, c.p.Output())
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Stop ends the run with SIGTERM and decodes its result into v.
func (c *Client) Stop(v any) error {
	if err := c.p.Signal(syscall.SIGTERM); err != nil && !c.p.Exited() {
		return err
	}
	return c.Wait(30*time.Second, v)
}

// Wait waits for a run that ends by itself and decodes its result into v.
func (c *Client) Wait(timeout time.Duration, v any) error {
	if err := c.p.Wait(timeout); err != nil {
		c.p.Kill()
		return fmt.Errorf("labclient: %w: %s", err, c.p.Output())
	}
	return traffic.ParseResult(c.p.Output(), v)
}
