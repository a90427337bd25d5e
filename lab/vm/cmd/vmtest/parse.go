package main

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// The driver script prints these around each test binary's output.
const (
	markBegin = "=== VMTEST BEGIN "
	markEnd   = "=== VMTEST END "
)

// pkgResult is what one test binary did, read from its -test.v output.
type pkgResult struct {
	ImportPath string
	Passed     int // top-level tests
	Failed     int
	Skipped    int
	Benchmarks int  // benchmark result lines
	NoTests    bool // "testing: warning: no tests to run"
	Began      bool
	Ended      bool
	Output     bytes.Buffer
	Elapsed    time.Duration
	Status     int  // the binary's exit status, -1 if it did not finish
	Reported   bool // its go-test-style line was printed
	start      time.Time
}

// Ran is the number of tests and benchmarks that actually ran; skipped tests
// prove nothing and do not count.
func (r *pkgResult) Ran() int { return r.Passed + r.Failed + r.Benchmarks }

var (
	reTopResult = regexp.MustCompile(`^--- (PASS|FAIL|SKIP): \S+ \(`)
	// "BenchmarkX-2   100   123 ns/op   0.5 ratio"; b.ReportMetric(0, "ns/op")
	// removes ns/op, so any "value unit" pairs count.
	reBenchLine = regexp.MustCompile(`^Benchmark\S*\s+\d+(\s+[-+.\deE]+ \S+)+\s*$`)
)

// streamParser splits the VM's output by package and counts results. With
// live set it copies every output line to live as it arrives.
type streamParser struct {
	pkgs  []*pkgResult
	cur   *pkgResult
	live  io.Writer
	line  []byte
	now   func() time.Time
	stray bytes.Buffer // output outside any package (the driver's own)
	onEnd func(i int, r *pkgResult)
}

func newStreamParser(pkgs []string, live io.Writer) *streamParser {
	p := &streamParser{live: live, now: time.Now}
	for _, ip := range pkgs {
		p.pkgs = append(p.pkgs, &pkgResult{ImportPath: ip})
	}
	return p
}

// Write never fails; it must not stall the VM's output.
func (p *streamParser) Write(b []byte) (int, error) {
	p.line = append(p.line, b...)
	for {
		i := bytes.IndexByte(p.line, '\n')
		if i < 0 {
			break
		}
		p.handle(string(p.line[:i+1]))
		p.line = p.line[i+1:]
	}
	return len(b), nil
}

// Flush handles a last line without a newline.
func (p *streamParser) Flush() {
	if len(p.line) > 0 {
		p.handle(string(p.line) + "\n")
		p.line = nil
	}
}

func (p *streamParser) handle(line string) {
	// A marker may follow output that did not end in a newline.
	for _, mark := range []string{markBegin, markEnd} {
		if i := strings.Index(line, mark); i >= 0 {
			if i > 0 {
				p.content(line[:i] + "\n")
			}
			p.marker(mark, strings.TrimSpace(line[i+len(mark):]))
			return
		}
	}
	p.content(line)
}

func (p *streamParser) marker(mark, arg string) {
	idx, err := strconv.Atoi(arg)
	if err != nil || idx < 0 || idx >= len(p.pkgs) {
		p.content(fmt.Sprintf("vmtest: unexpected marker %q %q\n", mark, arg))
		return
	}
	r := p.pkgs[idx]
	if mark == markBegin {
		r.Began, r.start = true, p.now()
		p.cur = r
		return
	}
	r.Ended = true
	r.Elapsed = p.now().Sub(r.start)
	p.cur = nil
	if p.onEnd != nil {
		p.onEnd(idx, r)
	}
}

func (p *streamParser) content(line string) {
	if p.live != nil {
		io.WriteString(p.live, line)
	}
	r := p.cur
	if r == nil {
		p.stray.WriteString(line)
		return
	}
	r.Output.WriteString(line)
	trimmed := strings.TrimRight(line, "\n")
	if m := reTopResult.FindStringSubmatch(trimmed); m != nil {
		switch m[1] {
		case "PASS":
			r.Passed++
		case "FAIL":
			r.Failed++
		case "SKIP":
			r.Skipped++
		}
	}
	if reBenchLine.MatchString(trimmed) {
		r.Benchmarks++
	}
	if strings.Contains(trimmed, "testing: warning: no tests to run") {
		r.NoTests = true
	}
}
