//go:build linux && privileged

package kernel

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/anycast-director/director/lab/netlab"
)

// nsPath is the namespace file VIPs and Advertiser open for a lab namespace.
func nsPath(ns *netlab.NS) string { return "/run/netns/" + ns.Name }

// addrsOf lists the addresses of a device in a namespace as the ip command
// sees them, rendered "local/len [label L] [nodad]" and sorted.
func addrsOf(t *testing.T, ns *netlab.NS, dev string) []string {
	t.Helper()
	var links []struct {
		AddrInfo []struct {
			Local     string `json:"local"`
			PrefixLen int    `json:"prefixlen"`
			Label     string `json:"label"`
			NoDAD     bool   `json:"nodad"`
		} `json:"addr_info"`
	}
	out := ns.MustRun("ip", "-j", "addr", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("parse ip -j addr: %v\n%s", err, out)
	}
	var res []string
	for _, l := range links {
		for _, a := range l.AddrInfo {
			s := fmt.Sprintf("%s/%d", a.Local, a.PrefixLen)
			if a.Label != "" && a.Label != dev {
				s += " label " + a.Label
			}
			if a.NoDAD {
				s += " nodad"
			}
			res = append(res, s)
		}
	}
	slices.Sort(res)
	return res
}

// linkUp reports whether a device in a namespace is administratively up.
func linkUp(t *testing.T, ns *netlab.NS, dev string) bool {
	t.Helper()
	var links []struct {
		Flags []string `json:"flags"`
	}
	out := ns.MustRun("ip", "-j", "link", "show", "dev", dev)
	if err := json.Unmarshal([]byte(out), &links); err != nil || len(links) != 1 {
		t.Fatalf("parse ip -j link: %v\n%s", err, out)
	}
	return slices.Contains(links[0].Flags, "UP")
}
