package compare

import (
	"context"
	"fmt"
	"time"

	"github.com/anycast-director/director/ipvs"
	"github.com/anycast-director/director/ipvs/dataplane"
)

// view reads the director namespace's IPVS table (read-only: the handle never
// writes) as a table of weights.
type view struct {
	h     *dataplane.Handle
	s     Scenario
	keys  []ipvs.Key
	index map[ipvs.Key]int
	rs    map[[4]byte]int
}

// table is one reading: w[i][j] is real server j's weight in service i, -1
// when absent; services counts the services present.
type table struct {
	services int
	w        [][]int
}

func newView(s Scenario, ns string) (*view, error) {
	h, err := dataplane.Open(nsPath(ns), nil)
	if err != nil {
		return nil, fmt.Errorf("open IPVS in %s: %w", ns, err)
	}
	v := &view{h: h, s: s, index: map[ipvs.Key]int{}, rs: map[[4]byte]int{}}
	for i := range s.Services {
		k := ipvs.Key{VIP: VIP(i), Port: s.Port(i), Protocol: 6}
		v.keys = append(v.keys, k)
		v.index[k] = i
	}
	for j := range s.RealServers {
		v.rs[RealServerAddr(j).As4()] = j
	}
	return v, nil
}

// read returns the kernel's table now.
func (v *view) read(ctx context.Context) (table, error) {
	have, err := v.h.Current(ctx, v.keys)
	if err != nil {
		return table{}, fmt.Errorf("read IPVS: %w", err)
	}
	t := table{w: make([][]int, v.s.Services)}
	for i := range t.w {
		t.w[i] = make([]int, v.s.RealServers)
		for j := range t.w[i] {
			t.w[i][j] = -1
		}
	}
	for _, svc := range have {
		i, ok := v.index[svc.Key]
		if !ok {
			continue
		}
		t.services++
		for _, d := range svc.Destinations {
			if j, ok := v.rs[d.Address.As4()]; ok && d.Address.Is4() {
				t.w[i][j] = d.Weight
			}
		}
	}
	return t, nil
}

// complete reports whether every service has every real server (any weight).
func (t table) complete() bool {
	for _, row := range t.w {
		for _, w := range row {
			if w < 0 {
				return false
			}
		}
	}
	return len(t.w) > 0 && t.services == len(t.w)
}

// matches reports whether every weight is the wanted one; a wanted 0 is also
// met by an absent destination (a failed server removed).
func (t table) matches(want Weights) bool {
	return t.services == len(t.w) && t.wrong(want, -1) == 0
}

// wrong counts (service, real server) pairs other than real server skip whose
// weight is not the wanted one.
func (t table) wrong(want Weights, skip int) int {
	n := 0
	for _, row := range t.w {
		for j, w := range row {
			if j == skip {
				continue
			}
			if w != want[j] && !(want[j] == 0 && w < 0) {
				n++
			}
		}
	}
	return n
}

// waitFor reads the table until ok holds, calling seen with every reading,
// and returns when the reading that met it ended.
func (v *view) waitFor(ctx context.Context, limit time.Duration, ok func(table) bool, seen func(table)) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	poll := max(time.Duration(v.s.Services)*50*time.Microsecond, 20*time.Millisecond)
	for {
		began := time.Now()
		t, err := v.read(ctx)
		at := time.Now()
		// Waiting twice as long as a reading took keeps the harness to a
		// third of one CPU: reading 10,000 destinations under emulation
		// took long enough that polling every 50 ms held a whole vCPU of
		// the two the daemon under test shares with the real servers.
		wait := max(poll, 2*at.Sub(began))
		if err == nil {
			if seen != nil {
				seen(t)
			}
			if ok(t) {
				return at, nil
			}
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return at, fmt.Errorf("waited %s: %w", limit, err)
		case <-time.After(wait):
		}
	}
}

// flush removes every IPVS service in the director's namespace.
func flushIPVS(ctx context.Context, ns string) error {
	return ipCmd(ctx, "netns", "exec", ns, "ipvsadm", "-C")
}

// close releases the netlink socket.
func (v *view) close() { _ = v.h.Close() }
