package statedir

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/anycast-director/director/config"
)

var t0 = time.Date(2026, 12, 1, 3, 0, 0, 0, time.UTC)

// sample is a state with one of everything and two kept configurations.
func sample() (*File, map[string][]byte) {
	a, b := []byte("# version A\n"), []byte("# version B\n")
	f := &File{
		Format: Format, Director: "d1", Written: t0,
		Overrides: []Override{
			{Kind: DrainDirector, Reason: "maintenance", Who: "uid=0", Created: t0, Expires: t0.Add(time.Hour)},
			{Kind: DisableVIP, Address: netip.MustParseAddr("198.18.0.11"), Created: t0},
			{Kind: DrainBackend, Service: "web", Address: netip.MustParseAddr("10.0.2.21"), Port: 80, Created: t0},
			{Kind: SetWeight, Address: netip.MustParseAddr("10.0.2.22"), Weight: 5, Created: t0},
		},
		Configs: []Config{
			{Version: 1, Digest: config.Digest(a), Source: "/etc/directord/directord.yaml", Loaded: t0, Reason: "start"},
			{Version: 2, Digest: config.Digest(b), Source: "/etc/directord/directord.yaml", Loaded: t0.Add(time.Minute), Who: "uid=0 pid=7", Reason: "reload"},
		},
		Owned: Owned{
			IPVS:  []Service{{Protocol: 6, VIP: netip.MustParseAddr("198.18.0.10"), Port: 80}},
			VIPs:  []netip.Addr{netip.MustParseAddr("198.18.0.10")},
			Marks: Marks{Announce: "bgp", VIPInterface: "lo", VIPBinding: "address", Protocol: 250, RouteTable: 200},
		},
	}
	return f, map[string][]byte{config.Digest(a): a, config.Digest(b): b}
}

func TestStoreRoundTrip(t *testing.T) {
	dir := t.TempDir()
	f, contents := sample()
	s := NewStore(dir)
	if r := s.Restore(t0); r.File != nil || r.Lost || r.Err != nil {
		t.Fatalf("an empty directory restored %+v", r)
	}
	if err := s.Save(f, contents); err != nil {
		t.Fatal(err)
	}
	r := NewStore(dir).Restore(t0)
	if r.Lost || r.Err != nil || len(r.Warnings) != 0 {
		t.Fatalf("restore: lost=%v err=%v warnings=%v", r.Lost, r.Err, r.Warnings)
	}
	if diff := cmp.Diff(f, r.File, cmpopts.EquateComparable(netip.Addr{})); diff != "" {
		t.Errorf("restored state (-saved +restored):\n%s", diff)
	}
	if diff := cmp.Diff(contents, r.Contents); diff != "" {
		t.Errorf("restored configurations (-saved +restored):\n%s", diff)
	}
	for _, name := range []string{FileName, ConfigsDir} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: the state may hold secrets of inline passwords, others must not read it", name, fi.Mode().Perm())
		}
	}
}

// TestStoreRestoreRemovesTemporaries: the temporary files of a write that
// a crash cut short are removed at the next start; the state is intact.
func TestStoreRestoreRemovesTemporaries(t *testing.T) {
	dir := t.TempDir()
	f, contents := sample()
	if err := NewStore(dir).Save(f, contents); err != nil {
		t.Fatal(err)
	}
	left := []string{filepath.Join(dir, "."+FileName+".tmp123"), filepath.Join(dir, ConfigsDir, ".abc.yaml.tmp9")}
	for _, n := range left {
		if err := os.WriteFile(n, []byte(`{"format":1,"overr`), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	r := NewStore(dir).Restore(t0)
	if r.Lost || r.File == nil || len(r.File.Configs) != 2 {
		t.Fatalf("restore after a cut write: lost %v, %v", r.Lost, r.Err)
	}
	for _, n := range left {
		if _, err := os.Stat(n); !os.IsNotExist(err) {
			t.Errorf("%s is still there (%v)", n, err)
		}
	}
}

// TestStoreSavePrunesConfigurations: a configuration that left the history
// loses its file; one still referenced keeps it, written once.
func TestStoreSavePrunesConfigurations(t *testing.T) {
	dir := t.TempDir()
	f, contents := sample()
	s := NewStore(dir)
	if err := s.Save(f, contents); err != nil {
		t.Fatal(err)
	}
	gone, kept := f.Configs[0].Digest, f.Configs[1].Digest
	keptPath := filepath.Join(dir, ConfigsDir, kept+".yaml")
	before, _ := os.Stat(keptPath)
	f.Configs = f.Configs[1:]
	// A fresh store (another process) finds the old file and prunes it.
	if err := NewStore(dir).Save(f, map[string][]byte{}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, ConfigsDir, gone+".yaml")); !os.IsNotExist(err) {
		t.Errorf("the configuration that left the history is still on disk (%v)", err)
	}
	after, err := os.Stat(keptPath)
	if err != nil {
		t.Fatalf("the kept configuration's file is gone: %v", err)
	}
	if !os.SameFile(before, after) {
		t.Errorf("the kept configuration's file was rewritten; it is written once")
	}
}

// TestStoreRestoreNeverFails: whatever the state file holds, Restore
// returns, sets a bad file aside (never deletes it) and says why; the next
// Save works.
func TestStoreRestoreNeverFails(t *testing.T) {
	good, contents := sample()
	data, err := json.Marshal(good)
	if err != nil {
		t.Fatal(err)
	}
	future := strings.Replace(string(data), `"format":1`, `"format":2`, 1)
	cases := map[string]struct {
		content string
		dir     bool // state.json is a directory
		want    string
	}{
		"empty":          {content: "", want: "corrupt or truncated"},
		"garbage":        {content: "\x00\xff not json", want: "corrupt or truncated"},
		"truncated":      {content: string(data[:len(data)/2]), want: "corrupt or truncated"},
		"trailing data":  {content: string(data) + `{"format":1}`, want: "data after its end"},
		"no format":      {content: `{"director":"d1"}`, want: "format 0"},
		"future format":  {content: future, want: "newer directord"},
		"wrong types":    {content: `{"format":1,"overrides":"drain"}`, want: "corrupt or truncated"},
		"not a file":     {dir: true, want: "not a regular file"},
		"bad VIP":        {content: `{"format":1,"owned":{"vips":["not-an-address"]}}`, want: "corrupt or truncated"},
		"huge number":    {content: `{"format":1e400}`, want: "corrupt or truncated"},
		"nested garbage": {content: `{"format":1,"configs":[{"version":"x"}]}`, want: "corrupt or truncated"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, FileName)
			if tc.dir {
				if err := os.Mkdir(path, 0o700); err != nil {
					t.Fatal(err)
				}
			} else if err := os.WriteFile(path, []byte(tc.content), 0o600); err != nil {
				t.Fatal(err)
			}
			r := NewStore(dir).Restore(t0)
			if !r.Lost || r.File != nil || r.Err == nil || !strings.Contains(r.Err.Error(), tc.want) {
				t.Fatalf("restore = lost %v, file %v, err %v; want lost with %q", r.Lost, r.File != nil, r.Err, tc.want)
			}
			if r.SetAside == "" {
				t.Fatalf("the bad file was not set aside")
			}
			if _, err := os.Stat(r.SetAside); err != nil {
				t.Errorf("the bad file is not where Restore says it put it: %v", err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("%s is still in place (%v): the next start would fail on it again", path, err)
			}
			if err := NewStore(dir).Save(good, contents); err != nil {
				t.Errorf("save after a lost state: %v", err)
			}
		})
	}
}

// TestStoreRestoreTruncatedAnywhere: every prefix of a good state file
// (what a write without the atomic rename could leave after a crash) is
// either refused and set aside, or read back as a valid state.
func TestStoreRestoreTruncatedAnywhere(t *testing.T) {
	good, _ := sample()
	data, err := json.MarshalIndent(good, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cuts := 0
	for n := 0; n < len(data); n += max(1, n/8) { // every byte near the start, then ever wider steps
		cuts++
		if err := os.WriteFile(filepath.Join(dir, FileName), data[:n], 0o600); err != nil {
			t.Fatal(err)
		}
		r := NewStore(dir).Restore(t0.Add(time.Duration(n)))
		if !r.Lost {
			t.Fatalf("a file cut at byte %d of %d was accepted", n, len(data))
		}
	}
	names, _ := filepath.Glob(filepath.Join(dir, FileName+".bad-*"))
	if len(names) != cuts {
		t.Errorf("%d bad files set aside, want %d (one per start)", len(names), cuts)
	}
}

// TestStoreRestoreDropsDamagedConfigurations: a configuration whose file is
// missing or does not match its digest leaves the history; the rest is
// restored.
func TestStoreRestoreDropsDamagedConfigurations(t *testing.T) {
	dir := t.TempDir()
	f, contents := sample()
	if err := NewStore(dir).Save(f, contents); err != nil {
		t.Fatal(err)
	}
	damaged := filepath.Join(dir, ConfigsDir, f.Configs[0].Digest+".yaml")
	if err := os.WriteFile(damaged, []byte("# edited by hand\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := NewStore(dir).Restore(t0)
	if r.Lost || r.File == nil {
		t.Fatalf("a damaged configuration file lost the whole state: %v", r.Err)
	}
	if len(r.File.Configs) != 1 || r.File.Configs[0].Version != 2 {
		t.Errorf("history after restore = %+v, want version 2 only", r.File.Configs)
	}
	if len(r.Warnings) != 1 || !strings.Contains(r.Warnings[0], "version 1") {
		t.Errorf("warnings = %q, want one about version 1", r.Warnings)
	}
	if len(r.File.Overrides) != len(f.Overrides) {
		t.Errorf("overrides restored: %d, want %d", len(r.File.Overrides), len(f.Overrides))
	}
}

// TestStoreSaveRefusesMalformedDigests: a digest becomes a file name, so
// one that is not hexadecimal is refused rather than written anywhere.
func TestStoreSaveRefusesMalformedDigests(t *testing.T) {
	dir := t.TempDir()
	f, _ := sample()
	f.Configs = []Config{{Version: 1, Digest: "../../etc/passwd"}}
	err := NewStore(dir).Save(f, map[string][]byte{"../../etc/passwd": []byte("x")})
	if err == nil || !strings.Contains(err.Error(), "malformed") {
		t.Fatalf("save with digest %q: %v", f.Configs[0].Digest, err)
	}
	if _, err := os.Stat(filepath.Join(dir, FileName)); !os.IsNotExist(err) {
		t.Errorf("a state file was written: %v", err)
	}
}

func ExampleStore_Save() {
	dir, _ := os.MkdirTemp("", "statedir")
	defer os.RemoveAll(dir)
	f := &File{Overrides: []Override{{Kind: DrainDirector, Reason: "maintenance", Created: t0}}}
	if err := NewStore(dir).Save(f, nil); err != nil {
		fmt.Println(err)
	}
	r := NewStore(dir).Restore(t0)
	fmt.Println(r.File.Overrides[0].Kind, r.File.Overrides[0].Reason)
	// Output: drain-director maintenance
}
