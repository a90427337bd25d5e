// Package benchreport turns the output of `make bench` (go test -bench lines
// with their custom metrics) into BENCH.md: every figure with its target, its
// verdict, and the machine that measured it. Targets are stated for the
// machine that ran them; the comparison with keepalived (BENCH-compare.md)
// holds the ratios that count.
package benchreport

import (
	"bufio"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/anycast-director/director/lab/compare"
)

// Results maps a benchmark's name (without the -GOMAXPROCS suffix) to its
// metrics by unit.
type Results map[string]map[string]float64

// benchLine matches "BenchmarkName-8   	  12	  345 ns/op	 6.7 unit ...".
var benchLine = regexp.MustCompile(`^(Benchmark\S+?)(?:-\d+)?\s+\d+\s+(.*)$`)

// Parse reads go test -bench output; later lines for the same benchmark win.
func Parse(r io.Reader) (Results, error) {
	out := Results{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		m := benchLine.FindStringSubmatch(strings.TrimSpace(sc.Text()))
		if m == nil {
			continue
		}
		f := strings.Fields(m[2])
		metrics := map[string]float64{}
		for i := 0; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			metrics[f[i+1]] = v
		}
		out[m[1]] = metrics
	}
	return out, sc.Err()
}

// Spec is one figure of the report.
type Spec struct {
	// Section groups figures under a heading.
	Section string
	// Figure says what is measured.
	Figure string
	// Bench is the benchmark's full name, Metric its unit.
	Bench, Metric string
	// Op is "<", "<=", ">=", "==" or "" (reported, no target).
	Op     string
	Target float64
	// Unit and Format render the value.
	Unit, Format string
	// VM marks figures measured inside the emulated VM.
	VM bool
}

// Verdict compares v with the target.
func (s Spec) Verdict(v float64) string {
	ok := false
	switch s.Op {
	case "":
		return "reported"
	case "<":
		ok = v < s.Target
	case "<=":
		ok = v <= s.Target
	case ">=":
		ok = v >= s.Target
	case "==":
		ok = v == s.Target
	}
	if ok {
		return "met"
	}
	return "MISSED"
}

// target renders "< 50 ms".
func (s Spec) target() string {
	if s.Op == "" {
		return "report"
	}
	return fmt.Sprintf("%s %s%s", s.Op, trim(s.Target), s.Unit)
}

// trim renders a target without trailing zeros, with thousands separated.
func trim(v float64) string {
	s := strconv.FormatFloat(v, 'f', -1, 64)
	whole, frac, _ := strings.Cut(s, ".")
	if len(whole) > 4 {
		var b strings.Builder
		for i, c := range whole {
			if i > 0 && (len(whole)-i)%3 == 0 {
				b.WriteByte(',')
			}
			b.WriteRune(c)
		}
		whole = b.String()
	}
	if frac != "" {
		return whole + "." + frac
	}
	return whole
}

// Info is what the report says about the run.
type Info struct {
	Commit string
	// CommitEnd, when it differs from Commit, is the working tree's commit
	// when the report was written: the tree moved during the run, and the
	// parts built late may be of it.
	CommitEnd string
	Date      time.Time
	Host      compare.Host
	// GuestKernel is the VM's kernel for the figures measured in it.
	GuestKernel string
	// Sections lists the parts of `make bench` that failed or did not run.
	Failed []string
}

// Write renders the report.
func Write(w io.Writer, specs []Spec, res Results, info Info) {
	fmt.Fprintf(w, "# Benchmarks\n\n")
	fmt.Fprintf(w, "Rewritten by `make bench` on %s from commit `%s`. Do not edit: regenerate it.\n\n",
		info.Date.UTC().Format("2006-01-02 15:04 UTC"), info.Commit)
	if info.CommitEnd != "" && info.CommitEnd != info.Commit {
		fmt.Fprintf(w, "**The working tree moved from `%s` to `%s` during the run**: the parts built after the move measured `%s`.\n\n",
			info.Commit, info.CommitEnd, info.CommitEnd)
	}
	fmt.Fprintf(w, "- Machine: %s, %d cores, kernel %s; load average %.1f before, %.1f after.\n",
		info.Host.CPU, info.Host.Cores, info.Host.Kernel, info.Host.LoadBefore, info.Host.LoadAfter)
	guest := info.GuestKernel
	if guest == "" {
		guest = "Debian's"
	}
	fmt.Fprintf(w, "- Figures marked *VM* ran inside a qemu VM with kernel %s under software emulation (TCG), about ten times slower than the host: compare them with each other, not with the host's.\n", guest)
	fmt.Fprintf(w, "- Each target is stated for the machine that measured it: absolute times move 2-6x between machines and with load. The figures that count are the ratios against keepalived measured in one VM boot: [BENCH-compare.md](BENCH-compare.md) (`make bench-compare`).\n\n")
	if len(info.Failed) > 0 {
		fmt.Fprintf(w, "**Parts that failed or did not run:** %s.\n\n", strings.Join(info.Failed, "; "))
	}
	section := ""
	for _, s := range specs {
		if s.Section != section {
			if section != "" {
				fmt.Fprintln(w)
			}
			section = s.Section
			fmt.Fprintf(w, "## %s\n\n| figure | target | measured | verdict |\n|---|---|---|---|\n", section)
		}
		name := s.Figure
		if s.VM {
			name += " *(VM)*"
		}
		v, ok := res[s.Bench][s.Metric]
		if !ok {
			fmt.Fprintf(w, "| %s | %s | not measured | not run |\n", name, s.target())
			continue
		}
		fmt.Fprintf(w, "| %s | %s | %s%s | %s |\n", name, s.target(), fmt.Sprintf(s.Format, v), s.Unit, s.Verdict(v))
	}
	fmt.Fprintln(w)
}

// Missed lists the figures that missed their targets or were not measured.
func Missed(specs []Spec, res Results) []string {
	var out []string
	for _, s := range specs {
		v, ok := res[s.Bench][s.Metric]
		switch {
		case !ok:
			out = append(out, s.Figure+": not measured")
		case s.Verdict(v) == "MISSED":
			out = append(out, fmt.Sprintf("%s: %s%s, target %s", s.Figure, fmt.Sprintf(s.Format, v), s.Unit, s.target()))
		}
	}
	return out
}
