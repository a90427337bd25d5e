package config

import (
	"strings"
	"testing"
)

// TestBackendPaths: the paths cut from one string are the ones indexPath
// and fieldPath build, for lists of every length up to three digits.
func TestBackendPaths(t *testing.T) {
	const list = "services[7].backends"
	for _, n := range []int{0, 1, 2, 10, 11, 101} {
		paths := backendPaths(list, n)
		if len(paths) != n {
			t.Fatalf("%d backends: %d paths", n, len(paths))
		}
		for j, p := range paths {
			item := indexPath(list, j)
			want := backendPath{item: item, address: fieldPath(item, "address"), port: fieldPath(item, "port"), weight: fieldPath(item, "weight")}
			if p != want {
				t.Errorf("%d backends, backend %d: %+v, want %+v", n, j, p, want)
			}
		}
	}
}

// TestJoin: paths cut from blocks are base and field joined, and stay so
// after join moves on to new blocks; a path too long for a block is built
// on its own.
func TestJoin(t *testing.T) {
	v := &validator{report: newReport("t.yaml")}
	var got, want []string
	for i := range 3 * pathBlock / 20 {
		base := indexPath("services", i)
		got = append(got, v.join(base, ".health.interval"))
		want = append(want, base+".health.interval")
	}
	long := strings.Repeat("x", pathBlock)
	got = append(got, v.join(long, ".y"), v.join("a", ".b"))
	want = append(want, long+".y", "a.b")
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("path %d: %.80q, want %.80q", i, got[i], want[i])
		}
	}
}
