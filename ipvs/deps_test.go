//go:build !vm

package ipvs

import (
	"os/exec"
	"strings"
	"testing"
)

// TestUsersDoNotLinkNetlink keeps the decision side free of kernel code: this
// package, the announcer and the control plane must not link netlink or
// moby/ipvs (only ipvs/dataplane and routing/kernel do), so they stay pure,
// testable anywhere and small.
func TestUsersDoNotLinkNetlink(t *testing.T) {
	const mod = "github.com/anycast-director/director/"
	pkgs := []string{mod + "ipvs", mod + "announcer", mod + "control", mod + "control/metrics"}
	forbidden := []string{"github.com/vishvananda/netlink", "github.com/moby/ipvs"}
	for _, p := range pkgs {
		// go test puts the go command of its own toolchain first in PATH.
		out, err := exec.Command("go", "list", "-deps", p).CombinedOutput()
		if err != nil {
			t.Fatalf("go list -deps %s: %v\n%s", p, err, out)
		}
		for _, dep := range strings.Fields(string(out)) {
			for _, f := range forbidden {
				if dep == f || strings.HasPrefix(dep, f+"/") {
					t.Errorf("%s links %s: move the kernel code behind an adapter (ipvs/dataplane, routing/kernel)", p, dep)
				}
			}
		}
	}
}
