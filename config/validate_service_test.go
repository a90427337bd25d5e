package config

import "testing"

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
