//go:build linux && vm

package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/anycast-director/director/lab/nslab"
)

// routerSessions reads the router's BGP neighbors by address.
func (e *env) routerSessions(ctx context.Context) (map[string]nslab.BGPNeighbor, error) {
	out, err := e.lab.Exec(ctx, router, "vtysh", "-c", "show bgp neighbors json")
	if err != nil {
		return nil, fmt.Errorf("router: show bgp neighbors: %v %s", err, out)
	}
	var n map[string]nslab.BGPNeighbor
	if err := json.Unmarshal([]byte(out), &n); err != nil {
		return nil, fmt.Errorf("router: show bgp neighbors: %w", err)
	}
	return n, nil
}

// checkOp asserts one of an operation's figures unless the machine's own
// session drops (op.MachineDrops) explain a miss, in which case it is
// reported as measured with the drops named.
func (e *env) checkOp(t *testing.T, sc string, op Operation, what string, ok bool, detail string, args ...any) {
	t.Helper()
	if ok || len(op.MachineDrops) == 0 {
		e.check(t, sc, what, ok, detail, args...)
		return
	}
	e.measured(t, sc, what, ok, detail+"; not attributable to directord: sessions of directors it left alone dropped (%s)",
		append(args, strings.Join(op.MachineDrops, "; "))...)
}
