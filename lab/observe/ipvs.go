package observe

import (
	"encoding/hex"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// The lab reads /proc/net/ip_vs with its own parser rather than the
// daemon's (ipvs/procread.go) on purpose: the lab checks what directord
// put in the kernel, so it must not share directord's reading of it. A bug
// in one parser then shows as a disagreement instead of being repeated by
// the check. Both follow ip_vs_info_seq_show in net/netfilter/ipvs.

// IPVSService is one virtual service as /proc/net/ip_vs or ipvsadm shows it.
type IPVSService struct {
	Proto     string
	Addr      netip.AddrPort
	Scheduler string
	// Dests are in the kernel's list order (/proc/net/ip_vs), which is the
	// order the mh table is built from; ipvsadm sorts them.
	Dests []IPVSDest
}

// IPVSDest is one real server of a service.
type IPVSDest struct {
	Addr                   netip.AddrPort
	Forward                string // Route, Tunnel, Masq
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

// ParseProcIPVS parses /proc/net/ip_vs: services by "addr:port", IPv4
// addresses in hex ("C612000A:0050"), IPv6 ones in brackets.
func ParseProcIPVS(data string) (map[string]IPVSService, error) {
	out := map[string]IPVSService{}
	var cur *IPVSService
	flush := func() {
		if cur != nil {
			out[cur.Addr.String()] = *cur
		}
	}
	for _, line := range strings.Split(data, "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) >= 3 && (f[0] == "TCP" || f[0] == "UDP" || f[0] == "SCTP"):
			flush()
			ap, err := procAddrPort(f[1])
			if err != nil {
				return nil, fmt.Errorf("/proc/net/ip_vs line %q: %w", line, err)
			}
			cur = &IPVSService{Proto: f[0], Addr: ap, Scheduler: f[2]}
		case len(f) >= 6 && f[0] == "->" && f[1] == "RemoteAddress:Port":
			// the header
		case len(f) >= 6 && f[0] == "->" && cur != nil:
			d, err := procDest(f)
			if err != nil {
				return nil, fmt.Errorf("/proc/net/ip_vs line %q: %w", line, err)
			}
			cur.Dests = append(cur.Dests, d)
		}
	}
	flush()
	return out, nil
}

// procDest reads "-> ADDR:PORT Forward Weight ActiveConn InActConn".
func procDest(f []string) (IPVSDest, error) {
	ap, err := procAddrPort(f[1])
	if err != nil {
		return IPVSDest{}, err
	}
	d := IPVSDest{Addr: ap, Forward: f[2]}
	for i, p := range []*int{&d.Weight, &d.ActiveConn, &d.InActConn} {
		if *p, err = strconv.Atoi(f[3+i]); err != nil {
			return IPVSDest{}, err
		}
	}
	return d, nil
}

// procAddrPort parses "C612000A:0050" or
// "[2001:0db8:0000:0000:0000:0000:0000:0010]:01BB".
func procAddrPort(s string) (netip.AddrPort, error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("%q is not address:port", s)
	}
	port, err := strconv.ParseUint(s[i+1:], 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("port of %q: %w", s, err)
	}
	a := s[:i]
	var addr netip.Addr
	if strings.HasPrefix(a, "[") && strings.HasSuffix(a, "]") {
		addr, err = netip.ParseAddr(a[1 : len(a)-1])
	} else {
		var b []byte
		if b, err = hex.DecodeString(a); err == nil && len(b) != 4 {
			err = fmt.Errorf("%d bytes", len(b))
		}
		if err == nil {
			addr = netip.AddrFrom4([4]byte(b))
		}
	}
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("address of %q: %w", s, err)
	}
	return netip.AddrPortFrom(addr, uint16(port)), nil
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
				continue // the header "-> RemoteAddress:Port"
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
