package dataplane

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"

	"github.com/anycast-director/director/ipvs"
)

// The kernel's /proc/net/ip_vs lists every service with its destinations in
// kernel list order, weight, forwarding and connection counts: everything
// Diff needs from a destination. Reading it is one file read for the whole
// namespace, where netlink needs one dump request per service (IPVS has no
// "all destinations" dump). Apply's full read therefore takes service
// attributes from the netlink service dump and destinations from this file;
// Stats still uses netlink, which alone has per-destination packet counters.
//
// The listing is not complete in every case: seen on Debian's 6.1 kernel, when
// other network namespaces also have IPVS services, a listing longer than one
// read() skips about half of the services. ip_vs_info_seq_next advances the
// position over the services of every namespace, while ip_vs_info_seq_start,
// called again for each read(), counts only this namespace's. What is listed
// is right (a service and its destinations are printed as one record), so a
// service missing from the listing is read over netlink instead
// (TestVMProcListingSkipsWithOtherNamespaces shows both).

// openProcIPVS opens /proc/net/ip_vs of the namespace at nsPath. The open file
// stays bound to that namespace, so later reads need no namespace switch.
func openProcIPVS(nsPath string) (*os.File, error) {
	var f *os.File
	err := inNetns(nsPath, func() error {
		var err error
		f, err = os.Open("/proc/thread-self/net/ip_vs")
		return err
	})
	return f, err
}

// readProcDests reads the destinations of the services owned(k) from an open
// /proc/net/ip_vs, in kernel list order, with their connection counts.
func readProcDests(f *os.File, owned func(ipvs.Key) bool) (map[ipvs.Key][]ipvs.Destination, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, fmt.Errorf("rewind /proc/net/ip_vs: %w", err)
	}
	return parseProcIPVS(bufio.NewReaderSize(f, 1<<20), owned)
}

// parseProcIPVS parses the text of /proc/net/ip_vs (ip_vs_info_seq_show):
//
//	TCP  C612000A:0050 mh
//	  -> 0A000215:0050      Route   1      0          0
//	TCP  [2001:0db8:0000:0000:0000:0000:0000:0010]:01BB wlc
//	  -> [2001:0db8:0000:0000:0000:0000:0000:0021]:01BB      Masq    1      0          0
func parseProcIPVS(r io.Reader, owned func(ipvs.Key) bool) (map[ipvs.Key][]ipvs.Destination, error) {
	out := make(map[ipvs.Key][]ipvs.Destination)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	var cur ipvs.Key
	keep := false
	line := 0
	fields := make([][]byte, 0, 8)
	for sc.Scan() {
		line++
		fields = splitFields(sc.Bytes(), fields[:0])
		if len(fields) < 2 || line <= 3 {
			continue // header
		}
		if string(fields[0]) == "->" {
			if !keep {
				continue
			}
			if len(fields) < 6 {
				return nil, fmt.Errorf("/proc/net/ip_vs line %d: short destination line %q", line, sc.Text())
			}
			d, err := parseProcDest(fields)
			if err != nil {
				return nil, fmt.Errorf("/proc/net/ip_vs line %d: %w", line, err)
			}
			out[cur] = append(out[cur], d)
			continue
		}
		var proto uint8
		switch string(fields[0]) {
		case "TCP":
			proto = 6
		case "UDP":
			proto = 17
		case "SCTP":
			proto = 132
		default: // FWM, AH, ESP: never managed here
			keep = false
			continue
		}
		ap, err := parseProcAddrPort(fields[1])
		if err != nil {
			return nil, fmt.Errorf("/proc/net/ip_vs line %d: %w", line, err)
		}
		cur = ipvs.Key{VIP: ap.Addr(), Port: ap.Port(), Protocol: proto}
		keep = owned(cur)
		if keep {
			out[cur] = []ipvs.Destination{}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read /proc/net/ip_vs: %w", err)
	}
	return out, nil
}

// parseProcDest parses "-> ADDR:PORT FORWARD WEIGHT ACTIVE INACTIVE".
func parseProcDest(f [][]byte) (ipvs.Destination, error) {
	ap, err := parseProcAddrPort(f[1])
	if err != nil {
		return ipvs.Destination{}, err
	}
	d := ipvs.Destination{Address: ap.Addr(), Port: ap.Port()}
	switch string(f[2]) {
	case "Route":
		d.Forwarding = ipvs.DirectRoute
	case "Masq":
		d.Forwarding = ipvs.Masquerade
	case "Tunnel":
		d.Forwarding = ipvs.Tunnel
	}
	nums := [3]int{}
	for i := range nums {
		n, ok := parseUint(f[3+i], 10, 31)
		if !ok {
			return ipvs.Destination{}, fmt.Errorf("destination %s: bad number %q", ap, f[3+i])
		}
		nums[i] = int(n)
	}
	d.Weight, d.Conns.Active, d.Conns.Inactive = nums[0], nums[1], nums[2]
	return d, nil
}

// parseProcAddrPort parses "C612000A:0050" (IPv4 and port in hex) or
// "[2001:0db8:...:0010]:01BB".
func parseProcAddrPort(b []byte) (netip.AddrPort, error) {
	i := bytes.LastIndexByte(b, ':')
	if i < 0 {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", b)
	}
	port, ok := parseUint(b[i+1:], 16, 16)
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", b)
	}
	host := b[:i]
	if len(host) > 2 && host[0] == '[' && host[len(host)-1] == ']' {
		a, err := netip.ParseAddr(string(host[1 : len(host)-1]))
		if err != nil || !a.Is6() {
			return netip.AddrPort{}, fmt.Errorf("bad IPv6 address %q", b)
		}
		return netip.AddrPortFrom(a, uint16(port)), nil
	}
	v, ok := parseUint(host, 16, 32)
	if !ok || len(host) != 8 {
		return netip.AddrPort{}, fmt.Errorf("bad IPv4 address %q", b)
	}
	a := netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)})
	return netip.AddrPortFrom(a, uint16(port)), nil
}

// splitFields is bytes.Fields into a reused slice.
func splitFields(b []byte, out [][]byte) [][]byte {
	start := -1
	for i, c := range b {
		if c == ' ' || c == '\t' {
			if start >= 0 {
				out = append(out, b[start:i])
				start = -1
			}
		} else if start < 0 {
			start = i
		}
	}
	if start >= 0 {
		out = append(out, b[start:])
	}
	return out
}

// parseUint parses a non-empty unsigned number of at most bits bits in base
// 10 or 16 (upper or lower case), without allocating: the listing has tens
// of thousands of lines.
func parseUint(b []byte, base uint64, bits uint) (uint64, bool) {
	if len(b) == 0 || len(b) > 20 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		var d uint64
		switch {
		case c >= '0' && c <= '9':
			d = uint64(c - '0')
		case base == 16 && c >= 'A' && c <= 'F':
			d = uint64(c-'A') + 10
		case base == 16 && c >= 'a' && c <= 'f':
			d = uint64(c-'a') + 10
		default:
			return 0, false
		}
		v = v*base + d
		if v>>bits != 0 {
			return 0, false
		}
	}
	return v, true
}
