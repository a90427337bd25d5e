package dataplane

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/ipvs"
)

// procSample is /proc/net/ip_vs as Debian's 6.1 kernel printed it in the VM.
const procSample = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
UDP  C612000C:0035 rr ops  
TCP  [2001:0db8:0000:0000:0000:0000:0000:0010]:01BB wlc 
  -> [2001:0db8:0000:0000:0000:0000:0000:0021]:01BB      Masq    1      0          0         
TCP  C612000A:0050 mh  
  -> 0A000217:0050      Route   1      3          1         
  -> 0A000216:0050      Tunnel  0      0          7         
  -> 0A000215:0050      Masq    65535  0          0         
FWM  00000001 rr 
  -> 0A000299:0000      Route   1      0          0         
TCP  C612000B:0050 sh  persistent 15000 FFFFFFFF
  -> 0A000299:0050      Route   1      0          0         
`

func TestParseProcIPVS(t *testing.T) {
	v6 := ipvs.Key{VIP: netip.MustParseAddr("2001:db8::10"), Port: 443, Protocol: 6}
	udp := ipvs.Key{VIP: netip.MustParseAddr("198.18.0.12"), Port: 53, Protocol: 17}
	notOwned := ipvs.Key{VIP: netip.MustParseAddr("198.18.0.11"), Port: 80, Protocol: 6}
	owned := func(k ipvs.Key) bool { return k != notOwned }
	got, err := parseProcIPVS(strings.NewReader(procSample), owned)
	if err != nil {
		t.Fatal(err)
	}
	d := func(a string, w int, f ipvs.Forwarding, act, inact int) ipvs.Destination {
		ap := netip.MustParseAddrPort(a)
		return ipvs.Destination{Address: ap.Addr(), Port: ap.Port(), Weight: w, Forwarding: f, Conns: ipvs.Conns{Active: act, Inactive: inact}}
	}
	want := map[ipvs.Key][]ipvs.Destination{
		udp: {},
		v6:  {d("[2001:db8::21]:443", 1, ipvs.Masquerade, 0, 0)},
		web: {
			d("10.0.2.23:80", 1, ipvs.DirectRoute, 3, 1),
			d("10.0.2.22:80", 0, ipvs.Tunnel, 0, 7),
			d("10.0.2.21:80", 65535, ipvs.Masquerade, 0, 0),
		},
	}
	if diff := cmp.Diff(want, got, netipComparers()...); diff != "" {
		t.Errorf("parse (-want +got):\n%s", diff)
	}
	for _, bad := range []string{
		"a\nb\nc\nTCP  C612000A:0050 mh\n  -> 0A0002:0050 Route 1 0 0\n",
		"a\nb\nc\nTCP  C612000A:0050 mh\n  -> 0A000215:0050 Route x 0 0\n",
		"a\nb\nc\nTCP  C612000A mh\n",
		"a\nb\nc\nTCP  C612000A:0050 mh\n  -> 0A000215:0050 Route\n",
	} {
		if _, err := parseProcIPVS(strings.NewReader(bad), owned); err == nil {
			t.Errorf("parse of %q succeeded", bad)
		}
	}
}
