// Package observe reads what a running lab shows, from outside its nodes:
// the router's route to a VIP, the directors' IPVS tables and counters,
// and the client traffic that labclient reports. The end-to-end tests, the
// demo and the directord VM tests use it.
package observe

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/anycast-director/director/lab/runner"
)

// NextHops returns the sorted gateways of the router's route to vip (none
// when there is no route).
func NextHops(ctx context.Context, lab *runner.Lab, router, vip string) ([]string, error) {
	n, err := lab.Node(router)
	if err != nil {
		return nil, err
	}
	return n.Gateways(ctx, vip)
}

// WaitNextHops polls the router's route every 50 ms until its next hops are
// exactly want (in any order; none for no route) and returns how long that
// took.
func WaitNextHops(ctx context.Context, lab *runner.Lab, router, vip string, want []string, timeout time.Duration) (time.Duration, error) {
	n, err := lab.Node(router)
	if err != nil {
		return 0, err
	}
	return n.WaitGateways(ctx, vip, want, timeout, 50*time.Millisecond)
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

// IPVSStats runs ipvsadm -Ln --stats --exact in a node: per service and
// destination, the connection, packet and byte counters.
func IPVSStats(ctx context.Context, lab *runner.Lab, node string) (map[string]IPVSService, error) {
	out, err := lab.Exec(ctx, node, "ipvsadm", "-Ln", "--stats", "--exact")
	if err != nil {
		return nil, err
	}
	return ParseIPVSStats(out)
}
