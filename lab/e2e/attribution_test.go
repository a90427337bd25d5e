package e2e

import (
	"slices"
	"testing"

	"github.com/anycast-director/director/lab/nslab"
)

func TestMachineDrops(t *testing.T) {
	addrs := map[string]string{"d1": "10.0.1.11", "d2": "10.0.1.12", "d3": "10.0.1.13"}
	nb := func(dropped int, reset string) nslab.BGPNeighbor {
		return nslab.BGPNeighbor{Dropped: dropped, LastReset: reset}
	}
	before := map[string]nslab.BGPNeighbor{"10.0.1.11": nb(0, ""), "10.0.1.12": nb(1, "BFD down received"), "10.0.1.13": nb(0, "")}
	tests := []struct {
		name    string
		after   map[string]nslab.BGPNeighbor
		touched []string
		want    []string
	}{
		{"nothing dropped", before, nil, nil},
		{"the touched director's own restart", map[string]nslab.BGPNeighbor{"10.0.1.11": nb(1, "Peer closed the session"), "10.0.1.12": nb(1, "BFD down received"), "10.0.1.13": nb(0, "")}, []string{"d1"}, nil},
		{"an untouched director's BFD", map[string]nslab.BGPNeighbor{"10.0.1.11": nb(0, ""), "10.0.1.12": nb(2, "BFD down received"), "10.0.1.13": nb(0, "")}, []string{"d1"},
			[]string{"d2: 1 drops (last: BFD down received)"}},
		{"a session directord closed is never the machine's", map[string]nslab.BGPNeighbor{"10.0.1.11": nb(1, "BGP Notification received"), "10.0.1.12": nb(1, "BFD down received"), "10.0.1.13": nb(0, "")}, nil, nil},
		{"a reload everywhere, hold timers expired", map[string]nslab.BGPNeighbor{"10.0.1.11": nb(1, "Hold Timer Expired"), "10.0.1.12": nb(1, "BFD down received"), "10.0.1.13": nb(1, "Hold Timer Expired")}, nil,
			[]string{"d1: 1 drops (last: Hold Timer Expired)", "d3: 1 drops (last: Hold Timer Expired)"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := machineDrops(before, tc.after, addrs, tc.touched); !slices.Equal(got, tc.want) {
				t.Errorf("machineDrops = %q, want %q", got, tc.want)
			}
		})
	}
}
