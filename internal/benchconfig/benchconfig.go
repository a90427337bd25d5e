// Package benchconfig writes the configuration the side-by-side benchmark
// (lab/compare) loads, for the Go benchmarks of what a reload of it costs.
package benchconfig

import (
	"fmt"
	"strings"
)

// Compare returns n services of 10 real servers, each service on its own
// port, real server 1 at weight w1, with the state directory stateDir.
func Compare(n, w1 int, stateDir string) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, "director: { name: bench, announce: none, graceful_shutdown: 0s, linger: 0s, state_dir: %s }\n", stateDir)
	b.WriteString("metrics: { listen: \"\" }\nservices:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - name: s%d\n    vip: 10.200.%d.%d\n    port: %d\n    forwarding: dr\n    scheduler: mh\n    scheduler_flags: [mh-port, mh-fallback]\n",
			i, i>>8, i&255, 10000+i)
		b.WriteString("    health: { type: tcp, interval: 2s, timeout: 1s, rise: 1, fall: 3 }\n    backends:\n")
		for j := range 10 {
			w := 1
			if j == 1 {
				w = w1
			}
			fmt.Fprintf(&b, "      - { address: 10.100.0.%d, weight: %d }\n", 10+j, w)
		}
	}
	return []byte(b.String())
}
