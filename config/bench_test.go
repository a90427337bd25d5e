package config

import (
	"fmt"
	"strings"
	"testing"

	"github.com/anycast-director/director/internal/benchconfig"
)

// largeConfig returns a file with n services of five backends each, the size
// the announcer's plan benchmark uses.
func largeConfig(n int) []byte {
	var b strings.Builder
	b.WriteString("director: { name: d1 }\nservices:\n")
	for i := 0; i < n; i++ {
		fmt.Fprintf(&b, "  - name: s%d\n    vip: 198.%d.%d.%d\n    port: 80\n    health: { type: http, path: /healthz, interval: 2s }\n    backends:\n",
			i, 18+i>>16, i>>8&255, i&255)
		for j := 0; j < 5; j++ {
			fmt.Fprintf(&b, "      - { address: 10.%d.%d.%d, weight: 1 }\n", 1+j, i>>8&255, i&255)
		}
	}
	return []byte(b.String())
}

// BenchmarkParseLarge measures loading 10,000 services x 5 backends and
// reports services per second and the file size.
func BenchmarkParseLarge(b *testing.B) {
	data := largeConfig(10000)
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		c, err := Parse("large.yaml", data)
		if err != nil {
			b.Fatalf("%.300v", err)
		}
		if len(c.Services) != 10000 {
			b.Fatalf("%d services", len(c.Services))
		}
	}
	b.ReportMetric(float64(10000*b.N)/b.Elapsed().Seconds(), "services/s")
	b.ReportMetric(float64(len(data))/(1<<20), "MiB/file")
}

// BenchmarkParseCompare measures what a reload of the side-by-side
// benchmark's file costs before the loop gets it (parse, decode, validate),
// at 100 and 1,000 services, and the YAML parse alone (parseYAML), in
// milliseconds per parse.
func BenchmarkParseCompare(b *testing.B) {
	for _, n := range []int{100, 1000} {
		data := benchconfig.Compare(n, 1, "/var/lib/directord")
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse("directord.yaml", data); err != nil {
					b.Fatalf("%.300v", err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/parse")
		})
		b.Run(fmt.Sprintf("%d/yaml", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, e := parseYAML("directord.yaml", data); e != nil {
					b.Fatal(e)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms/parse")
		})
	}
}
