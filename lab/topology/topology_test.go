package topology

import (
	"bytes"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v3"

	"github.com/anycast-director/director/config"
	"github.com/anycast-director/director/lab/runner"
	"github.com/anycast-director/director/routing/routerconfig"
)

var update = flag.Bool("update", false, "rewrite router/frr.conf from the directors' configurations")

const topologyFile = "../../containerlab.yml"

// compileSchema compiles containerlab's schema from this folder.
func compileSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	f, err := os.Open("clab.schema.json")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	doc, err := jsonschema.UnmarshalJSON(f)
	if err != nil {
		t.Fatalf("clab.schema.json: %v", err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("https://containerlab.dev/clab.schema.json", doc); err != nil {
		t.Fatal(err)
	}
	sch, err := c.Compile("https://containerlab.dev/clab.schema.json")
	if err != nil {
		t.Fatalf("compile clab.schema.json: %v", err)
	}
	return sch
}

// instance turns YAML into the JSON value the schema validates.
func instance(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	js, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := jsonschema.UnmarshalJSON(bytes.NewReader(js))
	if err != nil {
		t.Fatal(err)
	}
	return inst
}

// TestTopologiesValidate: the baseline and the test topologies are
// containerlab files too.
func TestTopologiesValidate(t *testing.T) {
	sch := compileSchema(t)
	files := []string{"baseline.clab.yml"}
	for _, name := range TestNames() {
		files = append(files, "tests/"+name+".clab.yml")
	}
	if len(files) < 3 {
		t.Fatalf("found only %v", files)
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := sch.Validate(instance(t, data)); err != nil {
			t.Errorf("%s does not validate against containerlab's schema:\n%v", f, err)
		}
	}
}

// TestTestTopologies: every test topology loads, and its nodes run the host
// image, which takes no binds: the tests start what the nodes run.
func TestTestTopologies(t *testing.T) {
	for _, name := range TestNames() {
		topo, err := Test(name)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range topo.Nodes {
			if n.Kind == runner.KindLinux && (n.Image != HostImage || len(n.Binds) > 0 || len(n.Cmd) > 0) {
				t.Errorf("%s: node %s runs %s (binds %v, cmd %v), want %s without binds or cmd", name, n.Name, n.Image, n.Binds, n.Cmd, HostImage)
			}
		}
	}
	if _, err := Test("no-such-topology"); err == nil || !strings.Contains(err.Error(), "router-directors") {
		t.Errorf("Test of an unknown name: %v, want an error listing the known ones", err)
	}
}

// TestBaselineIsTheLab: baseline.clab.yml is containerlab.yml with each
// director bound to its baseline/ file instead of directors/, nothing else.
func TestBaselineIsTheLab(t *testing.T) {
	lab, err := runner.Load(topologyFile)
	if err != nil {
		t.Fatal(err)
	}
	base, err := runner.Load("baseline.clab.yml")
	if err != nil {
		t.Fatal(err)
	}
	swapped := 0
	for _, n := range base.Nodes {
		for i, b := range n.Binds {
			if rel, ok := strings.CutPrefix(b.Source, filepath.Join(base.Dir, "baseline")+"/"); ok {
				n.Binds[i].Source = filepath.Join(lab.Dir, "lab/topology/directors", rel)
				swapped++
			}
		}
	}
	if swapped != 3 {
		t.Errorf("baseline.clab.yml binds %d baseline/ files, want one per director (3)", swapped)
	}
	base.Name, base.Path, base.Dir = lab.Name, lab.Path, lab.Dir
	if diff := cmp.Diff(lab, base); diff != "" {
		t.Errorf("baseline.clab.yml differs from containerlab.yml beyond the directors' files (-lab +baseline):\n%s", diff)
	}
}

func TestContainerlabSchema(t *testing.T) {
	sch := compileSchema(t)
	data, err := os.ReadFile(topologyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := sch.Validate(instance(t, data)); err != nil {
		t.Fatalf("containerlab.yml does not validate against containerlab's schema:\n%v", err)
	}
	// The schema must be able to say no: each mutation is a mistake
	// containerlab would refuse.
	for _, m := range []struct{ name, from, to string }{
		{"unknown kind", "kind: bridge", "kind: switchy"},
		{"unknown node field", "cmd: sleep infinity", "command: sleep infinity"},
		{"link without endpoints", `- endpoints: ["client:eth1"`, `- endpoint: ["client:eth1"`},
		{"bad node name", "\n    d1:\n", "\n    d 1:\n"},
		{"unknown top-level key", "name: anycast-director", "name: anycast-director\nnodes: {}"},
	} {
		mutated := strings.Replace(string(data), m.from, m.to, 1)
		if mutated == string(data) {
			t.Fatalf("%s: %q is not in containerlab.yml", m.name, m.from)
		}
		if err := sch.Validate(instance(t, []byte(mutated))); err == nil {
			t.Errorf("%s: the schema accepted a broken topology", m.name)
		}
	}
}

// loadAll loads directors/d1..d3.yaml (or baseline/).
func loadAll(t *testing.T, dir string) []*config.Config {
	t.Helper()
	var cfgs []*config.Config
	for _, n := range []string{"d1", "d2", "d3"} {
		c, err := config.Load(filepath.Join(dir, n+".yaml"))
		if err != nil {
			t.Fatalf("%s/%s.yaml: %v", dir, n, err)
		}
		cfgs = append(cfgs, c)
	}
	return cfgs
}

// TestRouterConfigIsGenerated: router/frr.conf is exactly what
// `directord router-config -flavor frr directors/d1.yaml directors/d2.yaml
// directors/d3.yaml` prints (the same routerconfig.Generate call with the
// command's default options).
func TestRouterConfigIsGenerated(t *testing.T) {
	want, err := routerconfig.Generate("frr", loadAll(t, "directors"), routerconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if *update {
		if err := os.WriteFile("router/frr.conf", want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile("router/frr.conf")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("router/frr.conf is stale; regenerate it with go test ./lab/topology -update (-generated +file):\n%s", diff)
	}
	// The baseline directors peer the same way, so the baseline lab runs
	// with the same router configuration.
	base, err := routerconfig.Generate("frr", loadAll(t, "baseline"), routerconfig.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(base)); diff != "" {
		t.Errorf("the baseline directors need a different router configuration (-directors +baseline):\n%s", diff)
	}
}

// TestBaselineDiffersOnlyInScheduling: a baseline director is its lab
// director with wlc, no scheduler flags and unmanaged sysctls, nothing else.
func TestBaselineDiffersOnlyInScheduling(t *testing.T) {
	ours, base := loadAll(t, "directors"), loadAll(t, "baseline")
	for i := range ours {
		o, b := ours[i].Clone(), base[i].Clone()
		if !o.IPVS.ManageSysctls || b.IPVS.ManageSysctls {
			t.Errorf("%s: manage_sysctls ours=%v baseline=%v, want true and false", o.Director.Name, o.IPVS.ManageSysctls, b.IPVS.ManageSysctls)
		}
		for j := range o.Services {
			so, sb := &o.Services[j], &b.Services[j]
			if so.Scheduler != "mh" || sb.Scheduler != "wlc" || len(sb.SchedulerFlags) != 0 {
				t.Errorf("%s service %s: scheduler ours=%s%v baseline=%s%v, want mh and wlc without flags",
					o.Director.Name, so.Name, so.Scheduler, so.SchedulerFlags, sb.Scheduler, sb.SchedulerFlags)
			}
			sb.Scheduler, sb.SchedulerFlags = so.Scheduler, so.SchedulerFlags
		}
		b.IPVS = o.IPVS
		b.Source, b.Digest, b.Content, b.Warnings = o.Source, o.Digest, o.Content, o.Warnings
		if diff := cmp.Diff(o, b, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{})); diff != "" {
			t.Errorf("%s: the baseline differs beyond scheduler and sysctls (-ours +baseline):\n%s", o.Director.Name, diff)
		}
	}
}

// TestDirectorsAgree: the directors share services, backends and weights
// (so their Maglev tables match), each binds its own file in
// containerlab.yml, and its addresses match the exec lines there.
func TestDirectorsAgree(t *testing.T) {
	cfgs := loadAll(t, "directors")
	topo, err := runner.Load(topologyFile)
	if err != nil {
		t.Fatal(err)
	}
	for i, c := range cfgs {
		if diff := cmp.Diff(cfgs[0].Services, c.Services, cmpopts.EquateComparable(netip.Addr{}, netip.Prefix{}, netip.AddrPort{})); diff != "" {
			t.Errorf("%s: services differ from d1 (-d1 +%s):\n%s", c.Director.Name, c.Director.Name, diff)
		}
		node := topo.Node(c.Director.Name)
		if node == nil {
			t.Errorf("containerlab.yml has no node %s", c.Director.Name)
			continue
		}
		wantBind := filepath.Join(topo.Dir, "lab/topology/directors", c.Director.Name+".yaml")
		found := false
		for _, b := range node.Binds {
			found = found || (b.Source == wantBind && b.Target == "/etc/directord/directord.yaml")
		}
		if !found {
			t.Errorf("node %s does not bind %s at /etc/directord/directord.yaml", node.Name, wantBind)
		}
		addr := c.BGP.Peers[0].LocalAddress.String()
		if !strings.Contains(execText(node), addr+"/24") {
			t.Errorf("node %s: its exec lines do not assign %s (the BGP local_address of directors[%d])", node.Name, addr, i)
		}
		if !strings.Contains(execText(topo.Node("router")), c.BGP.Peers[0].Address.String()+"/24") {
			t.Errorf("the router's exec lines do not assign %s, %s's BGP peer", c.BGP.Peers[0].Address, node.Name)
		}
		for _, be := range c.Services[0].Backends {
			found := false
			for _, n := range topo.Nodes {
				found = found || strings.Contains(execText(n), be.Address.String()+"/24")
			}
			if !found {
				t.Errorf("backend %s is no node's address in containerlab.yml", be.Address)
			}
		}
	}
}

func execText(n *runner.Node) string {
	var b strings.Builder
	for _, argv := range n.Exec {
		b.WriteString(strings.Join(argv, " ") + "\n")
	}
	return b.String()
}

// TestImageHasTheCommands: every program that containerlab.yml runs in a
// node of the lab image is installed by lab/images/Dockerfile.
func TestImageHasTheCommands(t *testing.T) {
	data, err := os.ReadFile("../images/Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	dockerfile := string(data)
	// The runner emulates the image with labkit's build: the same programs.
	for _, pkg := range Programs() {
		if !regexp.MustCompile(regexp.QuoteMeta(pkg) + `\b`).MatchString(dockerfile) {
			t.Errorf("labkit builds %s for the runner, but lab/images/Dockerfile does not", pkg)
		}
	}
	topo, err := runner.Load(topologyFile)
	if err != nil {
		t.Fatal(err)
	}
	// What provides each program in the image.
	provides := map[string]*regexp.Regexp{
		"ip":          regexp.MustCompile(`\biproute2\b`),
		"sleep":       regexp.MustCompile(`FROM debian:`), // coreutils is essential
		"sh":          regexp.MustCompile(`FROM debian:`),
		"ipvsadm":     regexp.MustCompile(`\bipvsadm\b`),
		"directord":   regexp.MustCompile(`\./cmd/directord\b`),
		"directorctl": regexp.MustCompile(`\./cmd/directorctl\b`),
		"labserver":   regexp.MustCompile(`\./lab/cmd/labserver\b`),
		"labclient":   regexp.MustCompile(`\./lab/cmd/labclient\b`),
	}
	for _, n := range topo.Nodes {
		if !strings.HasPrefix(n.Image, "anycast-director/lab:") {
			continue
		}
		for _, argv := range append([][]string{n.Cmd}, n.Exec...) {
			if len(argv) == 0 {
				continue
			}
			re, ok := provides[argv[0]]
			if !ok {
				t.Errorf("node %s runs %s: add what provides it to this test and to the Dockerfile", n.Name, argv[0])
				continue
			}
			if !re.MatchString(dockerfile) {
				t.Errorf("node %s runs %s, but lab/images/Dockerfile does not install it (%s)", n.Name, argv[0], re)
			}
		}
	}
}
