package runner

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/anycast-director/director/lab/nslab"
)

func TestSplitCommand(t *testing.T) {
	tests := []struct {
		in      string
		want    []string
		wantErr string
	}{
		{in: "directord run -config /etc/x.yaml", want: []string{"directord", "run", "-config", "/etc/x.yaml"}},
		{in: "  ip   addr\tadd  ", want: []string{"ip", "addr", "add"}},
		{in: `sh -c 'echo "$A" > /tmp/x'`, want: []string{"sh", "-c", `echo "$A" > /tmp/x`}},
		{in: `echo "a \"b\" \$c \d"`, want: []string{"echo", `a "b" $c \d`}},
		{in: `a\ b c`, want: []string{"a b", "c"}},
		{in: `x "" ''`, want: []string{"x", "", ""}},
		{in: `pre'fix'"ed"`, want: []string{"prefixed"}},
		{in: "", want: nil},
		{in: "echo 'open", wantErr: "unterminated single quote"},
		{in: `echo "open`, wantErr: "unterminated double quote"},
		{in: `echo \`, wantErr: "trailing backslash"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := SplitCommand(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("SplitCommand(%q) error = %v, want %q", tt.in, err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("SplitCommand(%q) (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

func TestLoadSmall(t *testing.T) {
	topo, err := Load("testdata/small.clab.yml")
	if err != nil {
		t.Fatal(err)
	}
	dir, _ := filepath.Abs("testdata")
	want := &Topology{
		Name: "small",
		Path: filepath.Join(dir, "small.clab.yml"),
		Dir:  dir,
		Nodes: []*Node{
			{Name: "a", Kind: KindLinux, Image: "example/host:1.0", Cmd: []string{"sleep", "infinity"},
				Exec: [][]string{{"ip", "addr", "add", "10.9.0.1/24", "dev", "eth1"}, {"ip", "addr", "add", "10.9.1.1/30", "dev", "eth2"},
					{"sh", "-c", `echo "$GREETING from $(hostname)" > /tmp/said`}},
				Binds: []Bind{{Source: filepath.Join(dir, "files/greeting.txt"), Target: "/etc/clab-runner-test/greeting.txt", ReadOnly: true},
					{Source: filepath.Join(dir, "files"), Target: "/srv/clab-runner-test"}},
				Env:     map[string]string{"GREETING": "hello", "COUNT": "3"},
				Sysctls: map[string]string{"net.ipv4.ip_forward": "1"}},
			{Name: "b", Kind: KindLinux, Image: "example/host:latest", Cmd: []string{"sleep", "infinity"},
				Exec: [][]string{{"ip", "addr", "add", "10.9.0.2/24", "dev", "eth1"}}},
			{Name: "c", Kind: KindLinux, Image: "example/host", Cmd: []string{"sleep", "infinity"},
				Exec: [][]string{{"ip", "addr", "add", "10.9.1.2/30", "dev", "eth1"}}},
			{Name: "sw", Kind: KindBridge},
		},
		Links: []Link{
			{A: Endpoint{"a", "eth1"}, B: Endpoint{"sw", "sw-a"}},
			{A: Endpoint{"b", "eth1"}, B: Endpoint{"sw", "sw-b"}},
			{A: Endpoint{"a", "eth2"}, B: Endpoint{"c", "eth1"}, MTU: 1400},
		},
	}
	if diff := cmp.Diff(want, topo); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	if got := len(topo.LinksOf("a")); got != 2 {
		t.Errorf("LinksOf(a) = %d links, want 2", got)
	}
}

// TestLoadRepositoryTopology reads the repository's containerlab.yml: every
// node and link is understood and every bound file exists.
func TestLoadRepositoryTopology(t *testing.T) {
	topo, err := Load("../../containerlab.yml")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range topo.Nodes {
		names = append(names, n.Name)
		for _, b := range n.Binds {
			if _, err := os.Stat(b.Source); err != nil {
				t.Errorf("node %s binds %s, which does not exist: %v", n.Name, b.Source, err)
			}
		}
	}
	want := []string{"client", "router", "d1", "d2", "d3", "rs1", "rs2", "rs3", "ad-lan"}
	if diff := cmp.Diff(want, names); diff != "" {
		t.Errorf("nodes (-want +got):\n%s", diff)
	}
	if len(topo.Links) != 8 {
		t.Errorf("%d links, want 8", len(topo.Links))
	}
}

func TestParseErrors(t *testing.T) {
	const head = "name: x\ntopology:\n  nodes:\n"
	tests := []struct {
		name, yml, want string
	}{
		{"unknown node field", head + "    a: {kind: linux, image: i, cmd: c, ports: [80]}\n", `field "ports" is not emulated`},
		{"unknown kind", head + "    a: {kind: srl, image: i}\n", `kind "srl" is not emulated`},
		{"no kind", head + "    a: {image: i}\n", "kind is required"},
		{"linux without image", head + "    a: {kind: linux}\n", "needs an image"},
		{"bridge with image", head + "    br: {kind: bridge, image: i}\n", "takes no image"},
		{"long bridge name", head + "    a-very-long-bridge: {kind: bridge}\n", "at most 15 characters"},
		{"relative bind target", head + "    a: {kind: linux, image: i, binds: ['x:etc/x']}\n", "absolute path"},
		{"bind option", head + "    a: {kind: linux, image: i, binds: ['x:/etc/x:z']}\n", `option "z"`},
		{"non-net sysctl", head + "    a: {kind: linux, image: i, sysctls: {kernel.pid_max: 1}}\n", "not a per-namespace net.* sysctl"},
		{"bad exec quoting", head + "    a: {kind: linux, image: i, exec: [\"sh -c 'x\"]}\n", "unterminated"},
		{"defaults", "name: x\ntopology:\n  defaults: {image: i}\n  nodes:\n    a: {kind: linux, image: i}\n", "topology.defaults is not supported"},
		{"kinds", "name: x\ntopology:\n  kinds: {linux: {image: i}}\n  nodes:\n    a: {kind: linux, image: i}\n", "topology.kinds is not supported"},
		{"no name", "topology:\n  nodes:\n    a: {kind: linux, image: i}\n", "has no name"},
		{"unknown top-level", "name: x\nfoo: 1\ntopology:\n  nodes:\n    a: {kind: linux, image: i}\n", "field foo not found"},
		{"link to missing node", head + "    a: {kind: linux, image: i}\n  links:\n    - endpoints: [a:eth1, b:eth1]\n", "no node b"},
		{"link with one endpoint", head + "    a: {kind: linux, image: i}\n  links:\n    - endpoints: [a:eth1]\n", "exactly two endpoints"},
		{"long interface", head + "    a: {kind: linux, image: i}\n    b: {kind: linux, image: i}\n  links:\n    - endpoints: [a:eth1, b:abcdefghijklmnop]\n", "not a valid interface name"},
		{"duplicate interface", head + "    a: {kind: linux, image: i}\n    b: {kind: linux, image: i}\n    c: {kind: linux, image: i}\n  links:\n    - endpoints: [a:eth1, b:eth1]\n    - endpoints: [a:eth1, c:eth1]\n", "already used by a:eth1"},
		{"bridge port twice", head + "    a: {kind: linux, image: i}\n    b: {kind: linux, image: i}\n    br: {kind: bridge}\n  links:\n    - endpoints: [a:eth1, br:p1]\n    - endpoints: [b:eth1, br:p1]\n", "already used by br:p1"},
		{"self link", head + "    a: {kind: linux, image: i}\n  links:\n    - endpoints: [a:eth1, a:eth2]\n", "connects a node to itself"},
		{"link extended form", head + "    a: {kind: linux, image: i}\n    b: {kind: linux, image: i}\n  links:\n    - type: veth\n      endpoints: [{node: a, interface: eth1}, {node: b, interface: eth1}]\n", "decode topology"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("/lab", []byte(tt.yml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want one containing %q", err, tt.want)
			}
		})
	}
}

func TestImageMatching(t *testing.T) {
	o := Options{Images: []Image{{Repository: "quay.io/frrouting/frr", Role: RoleFRR}, {Repository: "localhost:5000/lab"}}}
	tests := []struct {
		ref     string
		want    string
		wantErr bool
	}{
		{ref: "quay.io/frrouting/frr:8.4.1", want: "quay.io/frrouting/frr"},
		{ref: "quay.io/frrouting/frr", want: "quay.io/frrouting/frr"},
		{ref: "quay.io/frrouting/frr@sha256:abcd", want: "quay.io/frrouting/frr"},
		{ref: "localhost:5000/lab:dev", want: "localhost:5000/lab"},
		{ref: "localhost:5000/lab", want: "localhost:5000/lab"},
		{ref: "frrouting/frr:8.4.1", wantErr: true},
	}
	for _, tt := range tests {
		img, err := o.image(tt.ref)
		if tt.wantErr {
			if err == nil {
				t.Errorf("image(%q) = %v, want an error", tt.ref, img.Repository)
			}
			continue
		}
		if err != nil || img.Repository != tt.want {
			t.Errorf("image(%q) = %q, %v; want %q", tt.ref, img.Repository, err, tt.want)
		}
	}
}

func TestHolderScript(t *testing.T) {
	// A fake filesystem: what exists, and whether it is a folder.
	fs := map[string]bool{
		"/": true, "/etc": true, "/etc/frr": true, "/etc/frr/frr.conf": false, "/usr": true, "/usr/local": true,
		"/usr/local/bin": true, "/src/a.conf": false, "/src/bin": true, "/src/dir": true,
	}
	exists := func(p string) (bool, bool) { d, ok := fs[p]; return ok, d }
	binds := []Bind{
		{Source: "/src/a.conf", Target: "/etc/frr/frr.conf", ReadOnly: true}, // exists: no overlay
		{Source: "/src/a.conf", Target: "/etc/directord/directord.yaml"},     // creates below /etc
		{Source: "/src/a.conf", Target: "/etc/directord/other/x.yaml"},       // /etc already writable
		{Source: "/src/bin", Target: "/usr/local/bin"},                       // folder over folder
		{Source: "/src/dir", Target: "/usr/local/share/lab"},                 // creates below /usr/local
	}
	script, err := holderSetup("/state/scratch/n1", binds, exists)
	if err != nil {
		t.Fatal(err)
	}
	var overlays, mounts []string
	for _, line := range strings.Split(script, "\n") {
		f := strings.Fields(line)
		switch {
		case strings.HasPrefix(line, "mount -t overlay"):
			overlays = append(overlays, f[len(f)-1])
		case strings.HasPrefix(line, "mount --bind"):
			mounts = append(mounts, f[3])
		}
	}
	if diff := cmp.Diff([]string{"'/etc'", "'/usr/local'"}, overlays); diff != "" {
		t.Errorf("overlays (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"'/etc/frr/frr.conf'", "'/etc/directord/directord.yaml'", "'/etc/directord/other/x.yaml'",
		"'/usr/local/bin'", "'/usr/local/share/lab'"}, mounts); diff != "" {
		t.Errorf("bind mounts (-want +got):\n%s", diff)
	}
	for _, want := range []string{"mount -o remount,bind,ro '/etc/frr/frr.conf'", "clab-run /run", "clab-tmp /tmp"} {
		if !strings.Contains(script, want) {
			t.Errorf("script lacks %q:\n%s", want, script)
		}
	}
	if strings.Count(script, "remount,bind,ro") != 1 {
		t.Errorf("only the ro bind is remounted read-only:\n%s", script)
	}

	for _, bad := range []struct {
		b    Bind
		want string
	}{
		{Bind{Source: "/src/a.conf", Target: "/newtop/x"}, "top-level"},
		{Bind{Source: "/missing", Target: "/etc/x"}, "does not exist"},
		{Bind{Source: "/src/bin", Target: "/etc/frr/frr.conf"}, "one is a folder"},
	} {
		if _, err := holderSetup("/s", []Bind{bad.b}, exists); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("holderSetup(%v) error = %v, want %q", bad.b, err, bad.want)
		}
	}
}

func TestParseFRRDaemons(t *testing.T) {
	data, err := os.ReadFile("../topology/router/daemons")
	if err != nil {
		t.Fatal(err)
	}
	got, err := ParseFRRDaemons(string(data))
	if err != nil {
		t.Fatal(err)
	}
	want := FRRDaemons{Daemons: []FRRDaemon{
		{Name: "zebra", Options: []string{"-A", "127.0.0.1", "-s", "90000000"}},
		{Name: "bgpd", Options: []string{"-A", "127.0.0.1"}},
		{Name: "staticd", Options: []string{"-A", "127.0.0.1"}},
		{Name: "bfdd", Options: []string{"-A", "127.0.0.1"}},
	}}
	if _, err := os.Stat(filepath.Join(nslab.FRRBin, "mgmtd")); err == nil {
		want.Daemons = append([]FRRDaemon{want.Daemons[0], {Name: "mgmtd"}}, want.Daemons[1:]...)
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseFRRDaemons (-want +got):\n%s", diff)
	}

	p, err := ParseFRRDaemons("ospfd=yes\nfrr_profile=\"datacenter\"\n")
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, d := range p.Daemons {
		names = append(names, d.Name)
	}
	if p.Profile != "datacenter" || !slices.Contains(names, "ospfd") || slices.Contains(names, "bgpd") {
		t.Errorf("frr_profile datacenter with ospfd only: got %+v", p)
	}
	for _, bad := range []string{"bgpd yes\n", "bgpd_options=-A 127.0.0.1\n"} {
		if _, err := ParseFRRDaemons(bad); err == nil {
			t.Errorf("ParseFRRDaemons(%q) accepted a malformed file", bad)
		}
	}
}
