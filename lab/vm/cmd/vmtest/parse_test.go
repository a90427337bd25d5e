package main

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// counts is the comparable part of a pkgResult.
type counts struct {
	Passed, Failed, Skipped, Benchmarks int
	NoTests, Began, Ended               bool
}

func countsOf(r *pkgResult) counts {
	return counts{r.Passed, r.Failed, r.Skipped, r.Benchmarks, r.NoTests, r.Began, r.Ended}
}

const sampleRun = `=== VMTEST BEGIN 0
=== RUN   TestA
--- PASS: TestA (0.00s)
=== RUN   TestB
=== RUN   TestB/sub
    --- PASS: TestB/sub (0.00s)
    --- FAIL: TestB/other (0.00s)
--- FAIL: TestB (0.01s)
=== RUN   TestC
    c_test.go:9: not root
--- SKIP: TestC (0.00s)
FAIL
=== VMTEST END 0
=== VMTEST BEGIN 1
testing: warning: no tests to run
PASS
=== VMTEST END 1
=== VMTEST BEGIN 2
goos: linux
BenchmarkApply
BenchmarkApply-2   	       3	 412345678 ns/op	         0.85 ratio
BenchmarkNoop-2    	 1000000	      1052 ns/op
BenchmarkCustom-2  	       1	         0.97 ratio	    12.5 ms/apply
BenchmarkNotAResult is running
PASS
partial line without newline=== VMTEST END 2
`

func TestStreamParserCountsPerPackage(t *testing.T) {
	for _, chunk := range []int{1, 7, len(sampleRun)} {
		var live bytes.Buffer
		p := newStreamParser([]string{"a", "b", "c"}, &live)
		for i := 0; i < len(sampleRun); i += chunk {
			p.Write([]byte(sampleRun[i:min(i+chunk, len(sampleRun))]))
		}
		p.Flush()
		got := []counts{countsOf(p.pkgs[0]), countsOf(p.pkgs[1]), countsOf(p.pkgs[2])}
		want := []counts{
			{Passed: 1, Failed: 1, Skipped: 1, Began: true, Ended: true},
			{NoTests: true, Began: true, Ended: true},
			{Benchmarks: 3, Began: true, Ended: true},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("chunk %d: counts (-want +got):\n%s", chunk, diff)
		}
		if strings.Contains(live.String(), "VMTEST") {
			t.Errorf("chunk %d: markers leaked into the live output", chunk)
		}
		if !strings.Contains(p.pkgs[2].Output.String(), "partial line without newline\n") {
			t.Errorf("chunk %d: text before a marker was lost: %q", chunk, p.pkgs[2].Output.String())
		}
		if p.pkgs[0].Ran() != 2 || p.pkgs[1].Ran() != 0 || p.pkgs[2].Ran() != 3 {
			t.Errorf("chunk %d: Ran = %d %d %d, want 2 0 3", chunk, p.pkgs[0].Ran(), p.pkgs[1].Ran(), p.pkgs[2].Ran())
		}
	}
}

func TestStreamParserStrayAndBadMarkers(t *testing.T) {
	p := newStreamParser([]string{"a"}, nil)
	p.Write([]byte("driver noise\n=== VMTEST BEGIN 9\n=== VMTEST END x\n"))
	if p.pkgs[0].Began {
		t.Errorf("an out-of-range marker started package 0")
	}
	for _, want := range []string{"driver noise", "unexpected marker"} {
		if !strings.Contains(p.stray.String(), want) {
			t.Errorf("stray output %q lacks %q", p.stray.String(), want)
		}
	}
}

func TestStreamParserElapsed(t *testing.T) {
	now := time.Unix(100, 0)
	p := newStreamParser([]string{"a"}, nil)
	p.now = func() time.Time { return now }
	p.Write([]byte("=== VMTEST BEGIN 0\n"))
	now = now.Add(1500 * time.Millisecond)
	p.Write([]byte("=== VMTEST END 0\n"))
	if p.pkgs[0].Elapsed != 1500*time.Millisecond {
		t.Errorf("Elapsed = %s, want 1.5s", p.pkgs[0].Elapsed)
	}
}

func TestStreamParserCallsOnEndPerPackage(t *testing.T) {
	p := newStreamParser([]string{"a", "b"}, nil)
	var ends []string
	p.onEnd = func(i int, r *pkgResult) { ends = append(ends, fmt.Sprintf("%d:%s:%d", i, r.ImportPath, r.Passed)) }
	p.Write([]byte(sampleRun[:strings.Index(sampleRun, "=== VMTEST BEGIN 2")]))
	if diff := cmp.Diff([]string{"0:a:1", "1:b:0"}, ends); diff != "" {
		t.Errorf("onEnd calls (-want +got):\n%s", diff)
	}
}
