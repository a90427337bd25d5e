package compare

import (
	"strings"
	"testing"
	"time"
)

// TestSmapsRSS sums a daemon's smaps per mapping and splits anonymous memory
// from file pages.
func TestSmapsRSS(t *testing.T) {
	smaps := `00400000-00402000 r--p 00000000 00:20 123   /usr/sbin/directord
Rss:                   8 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
00402000-00ecb000 r-xp 00002000 00:20 123   /usr/sbin/directord
Rss:                8548 kB
Private_Dirty:         0 kB
Anonymous:             0 kB
01ba8000-01ba9000 r--p 017a7000 00:20 123   /usr/sbin/directord
Rss:                   4 kB
Private_Dirty:         4 kB
Anonymous:             4 kB
c000000000-c004000000 rw-p 00000000 00:00 0
Rss:                9000 kB
Private_Dirty:      9000 kB
Anonymous:          9000 kB
AnonHugePages:      6144 kB
7f0000000000-7f0000100000 rw-p 00000000 00:00 0
Rss:                 300 kB
Private_Dirty:       300 kB
Anonymous:           300 kB
`
	ms := smapsRSS([]byte(smaps))
	want := []mappingRSS{
		{name: "[anon] rw-p", rss: 9300, dirty: 9300, anon: 9300, huge: 6144},
		{name: "/usr/sbin/directord r-xp", rss: 8548},
		{name: "/usr/sbin/directord r--p", rss: 12, dirty: 4, anon: 4},
	}
	if len(ms) != len(want) {
		t.Fatalf("got %+v, want %+v", ms, want)
	}
	for i := range want {
		if ms[i] != want[i] {
			t.Errorf("mapping %d: got %+v, want %+v", i, ms[i], want[i])
		}
	}
	var b strings.Builder
	writeMappings(&b, ms)
	if !strings.Contains(b.String(), "RSS 17860 kB: anonymous 9304 kB (in transparent huge pages 6144 kB), file pages 8556 kB") ||
		!strings.Contains(b.String(), "12 kB (anonymous 4)  1 mappings of less than 100 kB each") {
		t.Errorf("totals wrong:\n%s", b.String())
	}
}

// TestCPUBreakdown splits the steady window's CPU into user and system, per
// probe.
func TestCPUBreakdown(t *testing.T) {
	got := cpuBreakdown(3*time.Second, 2*time.Second, 420, 1000)
	want := "steady window: 1000 probes; CPU 3.00 s (3.000 ms per probe): user 1.00 s (1.000 ms per probe), system 2.00 s (2.000 ms per probe); 420 minor page faults\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
}
