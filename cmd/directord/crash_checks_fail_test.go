//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/internal/atomicfile"
	"github.com/anycast-director/director/statedir"
)

// The crash-anywhere test's judgements (crash_checks_test.go) fed wrong
// outcomes: each must be reported, saying what differs; right ones must
// pass. The VM test cannot show this itself: a working daemon never gives
// it a wrong outcome.

// wantProblems fails unless problems has exactly one line per entry of
// want, each containing its entry; want empty means no problem.
func wantProblems(t *testing.T, problems []string, want ...string) {
	t.Helper()
	if len(problems) != len(want) {
		t.Fatalf("got %d problems, want %d (%q):\n%s", len(problems), len(want), want, strings.Join(problems, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(problems[i], w) {
			t.Errorf("problem %d is %q, want it to say %q", i, problems[i], w)
		}
	}
}

// crashKernel is a clean start's kernel: two services of two destinations.
func crashKernel() map[string]kernelService {
	return map[string]kernelService{
		"198.18.0.1:80": {Scheduler: "mh", Dests: []kernelDest{{Addr: "10.66.0.21:80", Fwd: "Route", Weight: 1}, {Addr: "10.66.0.22:80", Fwd: "Route", Weight: 2}}},
		"198.18.0.2:80": {Scheduler: "mh", Dests: []kernelDest{{Addr: "10.66.0.21:80", Fwd: "Route", Weight: 1}, {Addr: "10.66.0.22:80", Fwd: "Route", Weight: 1}}},
	}
}

func TestDiffKernelReportsEachDifference(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(k map[string]kernelService)
		want   []string
	}{
		{"same", func(map[string]kernelService) {}, nil},
		{"connection counts differ", func(k map[string]kernelService) { k["198.18.0.1:80"].Dests[0].Active = 9 }, nil},
		{"extra service", func(k map[string]kernelService) {
			k["198.18.0.3:80"] = kernelService{Scheduler: "mh", Dests: []kernelDest{{Addr: "10.66.0.21:80", Fwd: "Route", Weight: 1}}}
		}, []string{"service 198.18.0.3:80 extra (a clean start does not have it): mh 10.66.0.21:80/Route/1"}},
		{"missing service", func(k map[string]kernelService) { delete(k, "198.18.0.2:80") },
			[]string{"service 198.18.0.2:80 missing (a clean start has it: mh 10.66.0.21:80/Route/1 10.66.0.22:80/Route/1)"}},
		{"missing destination", func(k map[string]kernelService) {
			s := k["198.18.0.1:80"]
			s.Dests = s.Dests[:1]
			k["198.18.0.1:80"] = s
		}, []string{"service 198.18.0.1:80: destination 10.66.0.22:80 missing (a clean start has it, Route weight 2)"}},
		{"extra destination", func(k map[string]kernelService) {
			s := k["198.18.0.2:80"]
			s.Dests = append(s.Dests, kernelDest{Addr: "10.66.0.23:80", Fwd: "Route"})
			k["198.18.0.2:80"] = s
		}, []string{"service 198.18.0.2:80: destination 10.66.0.23:80 extra (Route weight 0"}},
		{"wrong weight", func(k map[string]kernelService) { k["198.18.0.1:80"].Dests[1].Weight = 1 },
			[]string{"service 198.18.0.1:80: destination 10.66.0.22:80 has weight 1, a clean start 2"}},
		{"wrong forwarding", func(k map[string]kernelService) { k["198.18.0.2:80"].Dests[0].Fwd = "Masq" },
			[]string{"service 198.18.0.2:80: destination 10.66.0.21:80 forwards by Masq, a clean start by Route"}},
		{"wrong scheduler", func(k map[string]kernelService) {
			s := k["198.18.0.2:80"]
			s.Scheduler = "rr"
			k["198.18.0.2:80"] = s
		}, []string{"service 198.18.0.2:80: scheduler rr, a clean start has mh"}},
		{"another destination order", func(k map[string]kernelService) {
			s := k["198.18.0.2:80"]
			s.Dests[0], s.Dests[1] = s.Dests[1], s.Dests[0]
		}, []string{"service 198.18.0.2:80: destinations in the order [10.66.0.22:80 10.66.0.21:80], a clean start [10.66.0.21:80 10.66.0.22:80]"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got := crashKernel()
			c.break_(got)
			wantProblems(t, diffKernel(crashKernel(), withoutCounts(got)), c.want...)
		})
	}
}

func TestDiffKernelBoundsItsReport(t *testing.T) {
	got := crashKernel()
	for i := range 30 {
		got["198.18.1."+string(rune('a'+i))+":80"] = kernelService{Scheduler: "mh"}
	}
	p := diffKernel(crashKernel(), got)
	if len(p) != maxDiffLines+1 || p[maxDiffLines] != "... and 10 more differences" {
		t.Fatalf("a report of 30 differences is not cut at %d lines:\n%s", maxDiffLines, strings.Join(p, "\n"))
	}
}

func TestOurServicesLeavesForeignOnesOut(t *testing.T) {
	k := crashKernel()
	k["198.18.0.1:8080"] = kernelService{Scheduler: "rr"}
	ours := ourServices(k, []string{"198.18.0.1:8080", "198.51.100.1:53"})
	wantProblems(t, diffKernel(crashKernel(), ours))
}

func TestConvergenceGapNamesLeftoverAndMissingServices(t *testing.T) {
	configured := []string{"198.18.0.1:80", "198.18.0.2:80"}
	wantProblems(t, convergenceGap(crashKernel(), configured))
	wantProblems(t, convergenceGap(crashKernel(), configured[:1]),
		"1 services in the kernel that the configuration does not have: 198.18.0.2:80")
	wantProblems(t, convergenceGap(crashKernel(), append(configured, "198.18.0.3:80")),
		"1 configured services not in the kernel: 198.18.0.3:80")
	many := []string{"198.18.0.1:80", "198.18.0.2:80", "a", "b", "c", "d", "e"}
	wantProblems(t, convergenceGap(crashKernel(), many),
		"5 configured services not in the kernel: a, b, c, d, e")
	wantProblems(t, convergenceGap(crashKernel(), append(many, "f")),
		"6 configured services not in the kernel: a, b, c, d, e and 1 more")
}

// foreignBefore is someone else's state as the crash test sets it up.
func foreignBefore() foreignState {
	return foreignState{
		Services: map[string]kernelService{
			"198.51.100.1:53": {Scheduler: "rr", Dests: []kernelDest{{Addr: "10.9.9.9:53", Fwd: "Route", Weight: 7}}},
			"198.18.0.1:8080": {Scheduler: "rr", Dests: []kernelDest{{Addr: "10.9.9.10:8080", Fwd: "Route", Weight: 8}}},
		},
		Addrs: map[string]bool{"192.0.2.99": true},
	}
}

func TestDiffForeignReportsAnyChange(t *testing.T) {
	cases := []struct {
		name   string
		break_ func(f *foreignState)
		want   []string
	}{
		{"untouched", func(*foreignState) {}, nil},
		{"service removed", func(f *foreignState) { delete(f.Services, "198.18.0.1:8080") },
			[]string{"someone else's service 198.18.0.1:8080 was removed (it was rr 10.9.9.10:8080/Route/8)"}},
		{"weight changed", func(f *foreignState) { f.Services["198.51.100.1:53"].Dests[0].Weight = 0 },
			[]string{"someone else's service 198.51.100.1:53 changed: rr 10.9.9.9:53/Route/0, it was rr 10.9.9.9:53/Route/7"}},
		{"destination removed", func(f *foreignState) {
			f.Services["198.51.100.1:53"] = kernelService{Scheduler: "rr"}
		}, []string{"someone else's service 198.51.100.1:53 changed: rr, it was rr 10.9.9.9:53/Route/7"}},
		{"scheduler changed", func(f *foreignState) {
			s := f.Services["198.18.0.1:8080"]
			s.Scheduler = "mh"
			f.Services["198.18.0.1:8080"] = s
		}, []string{"someone else's service 198.18.0.1:8080 changed: mh 10.9.9.10:8080/Route/8, it was rr 10.9.9.10:8080/Route/8"}},
		{"address removed", func(f *foreignState) { f.Addrs["192.0.2.99"] = false },
			[]string{"someone else's address 192.0.2.99: present false, it was true"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			after := foreignBefore()
			c.break_(&after)
			wantProblems(t, diffForeign(foreignBefore(), after), c.want...)
		})
	}
}

// crashFiles writes what a working daemon leaves: a state file keeping two
// configuration versions, and the configuration file (version b) with a
// rollback's backup (version a). It returns the state folder, the
// configuration file and the versions.
func crashFiles(t *testing.T) (stateDir, cfgPath string, versions []string) {
	t.Helper()
	dir := t.TempDir()
	stateDir, cfgPath = filepath.Join(dir, "state"), filepath.Join(dir, "directord.yaml")
	a, b := "services: [] # a\n", "services: [] # b\n"
	f := &statedir.File{Director: "crash", Written: time.Now(), Configs: []statedir.Config{
		{Version: 1, Digest: config.Digest([]byte(a)), Loaded: time.Now()},
		{Version: 2, Digest: config.Digest([]byte(b)), Loaded: time.Now()},
	}}
	contents := map[string][]byte{config.Digest([]byte(a)): []byte(a), config.Digest([]byte(b)): []byte(b)}
	if err := statedir.NewStore(stateDir).Save(f, contents); err != nil {
		t.Fatal(err)
	}
	mustWrite(t, cfgPath, b)
	mustWrite(t, cfgPath+".bak-20261206T210000.000Z", a)
	return stateDir, cfgPath, []string{a, b}
}

func mustWrite(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

// truncate cuts the file at path to half its size, as a kill in the
// middle of a write in place would leave it.
func truncate(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, fi.Size()/2); err != nil {
		t.Fatal(err)
	}
}

func TestCheckStateFilesFindsDamage(t *testing.T) {
	kept := func(stateDir, cfgPath string, versions []string) string {
		return filepath.Join(stateDir, statedir.ConfigsDir, config.Digest([]byte(versions[0]))+".yaml")
	}
	cases := []struct {
		name   string
		break_ func(t *testing.T, stateDir, cfgPath string, versions []string)
		want   []string
	}{
		{"whole", func(*testing.T, string, string, []string) {}, nil},
		{"state file truncated", func(t *testing.T, stateDir, _ string, _ []string) {
			truncate(t, filepath.Join(stateDir, statedir.FileName))
		}, []string{"the state file does not read back: the state file " /* ... is corrupt or truncated */}},
		{"state file empty", func(t *testing.T, stateDir, _ string, _ []string) {
			mustWrite(t, filepath.Join(stateDir, statedir.FileName), "")
		}, []string{"the state file does not read back"}},
		{"state file gone", func(t *testing.T, stateDir, _ string, _ []string) {
			os.Remove(filepath.Join(stateDir, statedir.FileName))
		}, []string{"there is no state file"}},
		{"kept configuration truncated", func(t *testing.T, stateDir, cfgPath string, versions []string) {
			truncate(t, kept(stateDir, cfgPath, versions))
		}, []string{"kept configuration 1 (" + config.Digest([]byte("services: [] # a\n")) + ") is missing or damaged: 8 bytes"}},
		{"kept configuration missing", func(t *testing.T, stateDir, cfgPath string, versions []string) {
			os.Remove(kept(stateDir, cfgPath, versions))
		}, []string{"kept configuration 1 ("}},
		{"state file set aside", func(t *testing.T, stateDir, _ string, _ []string) {
			mustWrite(t, filepath.Join(stateDir, statedir.FileName+".bad-20261206T210000.000000000Z"), "{")
		}, []string{"a state file was set aside as unusable: "}},
		{"configuration file truncated", func(t *testing.T, _, cfgPath string, _ []string) {
			truncate(t, cfgPath)
		}, []string{"directord.yaml is not one of the configuration versions in full (8 bytes, <nil>)"}},
		{"rollback's backup truncated", func(t *testing.T, _, cfgPath string, _ []string) {
			truncate(t, cfgPath+".bak-20261206T210000.000Z")
		}, []string{"directord.yaml.bak-20261206T210000.000Z is not one of the configuration versions in full (8 bytes"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			stateDir, cfgPath, versions := crashFiles(t)
			c.break_(t, stateDir, cfgPath, versions)
			wantProblems(t, checkStateFiles(stateDir, cfgPath, versions), c.want...)
		})
	}
}

func TestLeftTemporariesNamesWhatARestartKept(t *testing.T) {
	stateDir, cfgPath, _ := crashFiles(t)
	if tmp := temporaries(stateDir, cfgPath); len(tmp) != 0 {
		t.Fatalf("temporaries in a clean state folder: %v", tmp)
	}
	left := filepath.Join(stateDir, "."+statedir.FileName+".tmp123")
	leftConfig := filepath.Join(stateDir, statedir.ConfigsDir, ".abc.yaml.tmp456")
	mustWrite(t, left, "{")
	mustWrite(t, leftConfig, "x")
	before := temporaries(stateDir, cfgPath)
	if len(before) != 2 {
		t.Fatalf("temporaries found %v, want %s and %s", before, left, leftConfig)
	}
	os.Remove(leftConfig)
	newOne := filepath.Join(stateDir, "."+statedir.FileName+".tmp789") // the restarted daemon's, in flight
	mustWrite(t, newOne, "{")
	wantProblems(t, leftTemporaries(before, temporaries(stateDir, cfgPath)),
		"temporary file "+left+" of the killed process is still there after the restart")
	os.Remove(left)
	wantProblems(t, leftTemporaries(before, temporaries(stateDir, cfgPath)))
}

func TestInPlaceWritesSeenThroughInotify(t *testing.T) {
	stateDir, cfgPath, _ := crashFiles(t)
	stateFile := filepath.Join(stateDir, statedir.FileName)
	keptConfig := filepath.Join(stateDir, statedir.ConfigsDir, "0123abcd.yaml")
	final := stateFinal(stateDir, cfgPath)
	replaced := func(path string) { // what directord does
		if err := atomicfile.Write(path, []byte("{}\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		name  string
		write func()
		want  []string
	}{
		{"state file replaced", func() { replaced(stateFile) }, nil},
		{"kept configuration replaced, then removed", func() { replaced(keptConfig); os.Remove(keptConfig) }, nil},
		{"configuration file replaced", func() { replaced(cfgPath) }, nil},
		{"something else written in place", func() { mustWrite(t, cfgPath+".bak-20261206T220000.000Z", "x") }, nil},
		{"state file written in place", func() { mustWrite(t, stateFile, "{}\n") },
			[]string{stateFile + " written, closed after writing in place, not replaced by a rename"}},
		{"kept configuration created in place", func() { mustWrite(t, keptConfig, "x") },
			[]string{keptConfig + " created, written, closed after writing in place"}},
		{"configuration file written in place", func() { mustWrite(t, cfgPath, "x") },
			[]string{cfgPath + " written, closed after writing in place"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			w := watchFiles(t, stateDir, cfgPath)
			c.write()
			wantProblems(t, inPlaceWrites(w.drain(), final), c.want...)
		})
	}
}
