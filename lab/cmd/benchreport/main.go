// Command benchreport writes BENCH.md from the output of `make bench`
// (scripts/bench.sh): every figure with its target and verdict, the commit,
// the date and the machine.
//
//	go run ./lab/cmd/benchreport -in bench-output.txt -out BENCH.md [-failed "section; ..."]
//
// Exit status 1 when a figure missed its target or was not measured (the
// report is written all the same).
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/anycast-director/director/lab/benchreport"
	"github.com/anycast-director/director/lab/compare"
)

func main() {
	in := flag.String("in", "", "go test -bench output of make bench")
	out := flag.String("out", "BENCH.md", "report to write")
	failed := flag.String("failed", "", "parts of make bench that failed, separated by ';'")
	guest := flag.String("guest-kernel", "", "the VM's kernel release, for the VM figures")
	load := flag.Float64("load-before", -1, "the 1-minute load average when make bench started")
	commit := flag.String("commit", "", "the commit when make bench started (default: the working tree's now)")
	flag.Parse()
	if err := run(*in, *out, *failed, *guest, *commit, *load); err != nil {
		fmt.Fprintln(os.Stderr, "benchreport:", err)
		os.Exit(1)
	}
}

func run(in, out, failed, guest, commit string, load float64) error {
	f, err := os.Open(in)
	if err != nil {
		return err
	}
	defer f.Close()
	res, err := benchreport.Parse(f)
	if err != nil {
		return err
	}
	host := compare.HostInfo()
	host.LoadAfter = host.LoadBefore
	host.LoadBefore = load
	info := benchreport.Info{Commit: commit, CommitEnd: compare.Commit("."), Date: time.Now(), Host: host, GuestKernel: guest}
	if info.Commit == "" {
		info.Commit = info.CommitEnd
	}
	for _, part := range strings.Split(failed, ";") {
		if p := strings.TrimSpace(part); p != "" {
			info.Failed = append(info.Failed, p)
		}
	}
	w, err := os.Create(out)
	if err != nil {
		return err
	}
	benchreport.Write(w, benchreport.Specs, res, info)
	if err := w.Close(); err != nil {
		return err
	}
	if missed := benchreport.Missed(benchreport.Specs, res); len(missed) > 0 {
		return fmt.Errorf("%s written; %d figures missed or not measured:\n  %s", out, len(missed), strings.Join(missed, "\n  "))
	}
	return nil
}
