package observe

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func TestParseProcIPVS(t *testing.T) {
	// /proc/net/ip_vs of a lab director (format of ip_vs_info_seq_show).
	const data = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port Scheduler Flags
  -> RemoteAddress:Port Forward Weight ActiveConn InActConn
TCP  C612000A:0050 mh 
  -> 0A000117:0050      Route   1      0          39        
  -> 0A000116:0050      Route   0      2          30        
  -> 0A000115:0050      Route   1      0          8         
TCP  C612000A:1B58 mh 
  -> 0A000117:1B58      Route   1      19         0         
`
	got, err := ParseProcIPVS(data)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := map[string]IPVSService{
		"198.18.0.10:80": {Proto: "TCP", Addr: ap("198.18.0.10:80"), Scheduler: "mh", Dests: []IPVSDest{
			{Addr: ap("10.0.1.23:80"), Forward: "Route", Weight: 1, InActConn: 39},
			{Addr: ap("10.0.1.22:80"), Forward: "Route", Weight: 0, ActiveConn: 2, InActConn: 30},
			{Addr: ap("10.0.1.21:80"), Forward: "Route", Weight: 1, InActConn: 8},
		}},
		"198.18.0.10:7000": {Proto: "TCP", Addr: ap("198.18.0.10:7000"), Scheduler: "mh", Dests: []IPVSDest{
			{Addr: ap("10.0.1.23:7000"), Forward: "Route", Weight: 1, ActiveConn: 19},
		}},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
		t.Errorf("ParseProcIPVS (-want +got):\n%s", diff)
	}
	if d := got["198.18.0.10:80"].Dest("10.0.1.22:80"); d == nil || d.Weight != 0 {
		t.Errorf("Dest(10.0.1.22:80) = %+v", d)
	}
	if d := got["198.18.0.10:80"].Dest("10.0.1.99:80"); d != nil {
		t.Errorf("Dest of an unknown address = %+v", d)
	}
	if _, err := ParseProcIPVS("TCP  XYZ:0050 mh\n"); err == nil {
		t.Error("a malformed service address was accepted")
	}
}

func TestParseIPVSStats(t *testing.T) {
	const out = `IP Virtual Server version 1.2.1 (size=4096)
Prot LocalAddress:Port               Conns   InPkts  OutPkts  InBytes OutBytes
  -> RemoteAddress:Port
TCP  198.18.0.10:80                    115      602        0    45334        0
  -> 10.0.1.21:80                       37      197        0    14758        0
  -> 10.0.1.22:80                       41      210        0    15922        0
TCP  198.18.0.10:7000                    0        0        0        0        0
  -> 10.0.1.21:7000                      0        0        0        0        0
`
	got, err := ParseIPVSStats(out)
	if err != nil {
		t.Fatal(err)
	}
	ap := netip.MustParseAddrPort
	want := map[string]IPVSService{
		"198.18.0.10:80": {Proto: "TCP", Addr: ap("198.18.0.10:80"), Dests: []IPVSDest{
			{Addr: ap("10.0.1.21:80"), Conns: 37, InPkts: 197, InBytes: 14758},
			{Addr: ap("10.0.1.22:80"), Conns: 41, InPkts: 210, InBytes: 15922},
		}},
		"198.18.0.10:7000": {Proto: "TCP", Addr: ap("198.18.0.10:7000"), Dests: []IPVSDest{{Addr: ap("10.0.1.21:7000")}}},
	}
	if diff := cmp.Diff(want, got, cmpopts.EquateComparable(netip.AddrPort{})); diff != "" {
		t.Errorf("ParseIPVSStats (-want +got):\n%s", diff)
	}
}
