package compare

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// memoryBreakdown describes where each of pids' resident memory lies, from
// /proc/PID/smaps: anonymous memory (a Go daemon's heap, stacks and runtime
// metadata; a C daemon's malloc arenas) apart from the file pages of its
// executable and libraries (code and read-only data it touched, which the
// page cache holds anyway and the kernel can reclaim), by mapping.
func memoryBreakdown(pids []int) string {
	var b strings.Builder
	for _, pid := range pids {
		data, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps", pid))
		if err != nil {
			fmt.Fprintf(&b, "pid %d: %v\n", pid, err)
			continue
		}
		comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
		fmt.Fprintf(&b, "pid %d (%s)\n", pid, strings.TrimSpace(string(comm)))
		writeMappings(&b, smapsRSS(data))
	}
	return b.String()
}

// mappingRSS is the resident memory of the mappings sharing a name and
// permissions, in kB.
type mappingRSS struct {
	name       string
	rss, dirty int64
	anon       int64
	// huge is the anonymous memory in transparent huge pages (2 MiB each:
	// a sparse heap in them is resident far beyond what it uses).
	huge int64
}

// smapsRSS sums smaps' Rss, Private_Dirty, Anonymous and AnonHugePages per mapping name and
// permissions (anonymous mappings are named [anon]).
func smapsRSS(smaps []byte) []mappingRSS {
	sums := map[string]*mappingRSS{}
	var cur *mappingRSS
	sc := bufio.NewScanner(bytes.NewReader(smaps))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") { // a mapping's header: range perms offset dev inode [path]
			name := "[anon]"
			if len(f) >= 6 {
				name = f[5]
			}
			if len(f) >= 2 {
				name += " " + f[1]
			}
			if sums[name] == nil {
				sums[name] = &mappingRSS{name: name}
			}
			cur = sums[name]
			continue
		}
		if cur == nil || len(f) < 2 {
			continue
		}
		kb, _ := strconv.ParseInt(f[1], 10, 64)
		switch f[0] {
		case "Rss:":
			cur.rss += kb
		case "Private_Dirty:":
			cur.dirty += kb
		case "Anonymous:":
			cur.anon += kb
		case "AnonHugePages:":
			cur.huge += kb
		}
	}
	out := make([]mappingRSS, 0, len(sums))
	for _, m := range sums {
		if m.rss > 0 {
			out = append(out, *m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].rss > out[j].rss })
	return out
}

// smallMapping is the resident size (kB) under which mappings are summed
// into one line: keepalived maps some fifty libraries of a few pages each.
const smallMapping = 100

// writeMappings writes the anonymous and file-backed totals, then each
// mapping's share, the small ones summed.
func writeMappings(b *strings.Builder, ms []mappingRSS) {
	var rss, anon, huge, smallRSS, smallAnon int64
	small := 0
	for _, m := range ms {
		rss += m.rss
		anon += m.anon
		huge += m.huge
	}
	fmt.Fprintf(b, "  RSS %d kB: anonymous %d kB (in transparent huge pages %d kB), file pages %d kB\n", rss, anon, huge, rss-anon)
	for _, m := range ms {
		if m.rss < smallMapping {
			small, smallRSS, smallAnon = small+1, smallRSS+m.rss, smallAnon+m.anon
			continue
		}
		fmt.Fprintf(b, "  %8d kB (anonymous %d, huge pages %d, dirty %d)  %s\n", m.rss, m.anon, m.huge, m.dirty, m.name)
	}
	if small > 0 {
		fmt.Fprintf(b, "  %8d kB (anonymous %d)  %d mappings of less than %d kB each\n", smallRSS, smallAnon, small, smallMapping)
	}
}

// cpuBreakdown says how a daemon's CPU time over the steady window splits
// between its own code (user) and the kernel's work on its behalf (system:
// sockets, connects, netlink, and page faults, counted apart), in total and
// per completed probe.
func cpuBreakdown(total, system time.Duration, faults int64, probes uint64) string {
	user := total - system
	per := func(d time.Duration) string {
		if probes == 0 {
			return "-"
		}
		return fmt.Sprintf("%.3f ms", d.Seconds()*1000/float64(probes))
	}
	return fmt.Sprintf("steady window: %d probes; CPU %.2f s (%s per probe): user %.2f s (%s per probe), system %.2f s (%s per probe); %d minor page faults\n",
		probes, total.Seconds(), per(total), user.Seconds(), per(user), system.Seconds(), per(system), faults)
}
