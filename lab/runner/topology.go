package runner

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Topology is what the runner takes from a containerlab topology file, and
// nothing else: every node, link, bound file, command and sysctl of the lab
// comes from here.
type Topology struct {
	// Name is the lab's name (the file's top-level `name`).
	Name string
	// Path is the absolute path of the file; Dir is its folder, against
	// which relative bind sources resolve (as containerlab does).
	Path, Dir string
	// Nodes are in file order.
	Nodes []*Node
	// Links are in file order.
	Links []Link
}

// Kind is a containerlab node kind the runner emulates.
type Kind string

// The node kinds the runner can emulate.
const (
	// KindLinux is a Linux container: a network namespace with its own
	// mount and UTS namespaces, running the image's role.
	KindLinux Kind = "linux"
	// KindBridge is a Linux bridge on the container host.
	KindBridge Kind = "bridge"
)

// Node is one `topology.nodes` entry.
type Node struct {
	Name  string
	Kind  Kind
	Image string
	// Cmd is the container command (containerlab's `cmd`), split like a
	// shell would split it; empty means the image's default role.
	Cmd []string
	// Exec are the commands containerlab runs in the node after the links
	// exist, each split like a shell would (no pipes or redirections:
	// write `sh -c '...'` for those, as with containerlab).
	Exec [][]string
	// Binds are the files and folders mounted into the node.
	Binds []Bind
	// Env is the container environment.
	Env map[string]string
	// Sysctls are set in the node's namespaces before it starts.
	Sysctls map[string]string
}

// Bind is one `binds` entry: Source (absolute, resolved against the topology
// folder) appears at Target inside the node.
type Bind struct {
	Source, Target string
	ReadOnly       bool
}

// Endpoint is one side of a link: an interface of a node.
type Endpoint struct {
	Node, Interface string
}

// String is the containerlab notation "node:interface".
func (e Endpoint) String() string { return e.Node + ":" + e.Interface }

// Link is a point-to-point veth link between two endpoints.
type Link struct {
	A, B Endpoint
	// MTU of both ends; 0 keeps the kernel default.
	MTU int
}

// Node returns the node with that name, or nil.
func (t *Topology) Node(name string) *Node {
	for _, n := range t.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// LinksOf returns the links with an endpoint on the node, in file order.
func (t *Topology) LinksOf(node string) []Link {
	var out []Link
	for _, l := range t.Links {
		if l.A.Node == node || l.B.Node == node {
			out = append(out, l)
		}
	}
	return out
}

// nodeKeys are the node fields the runner emulates; ignoredNodeKeys are
// accepted and documented as having no effect here (they concern only the
// management network, container labels or image pulling). Any other field
// is an error, so that a topology never silently means something else in
// the runner than in containerlab.
func nodeKeys() []string { return []string{"kind", "image", "cmd", "exec", "binds", "env", "sysctls"} }

func ignoredNodeKeys() []string {
	return []string{"labels", "mgmt-ipv4", "mgmt-ipv6", "image-pull-policy", "group"}
}

var (
	nodeNameRE  = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_-]*$`)
	ifaceNameRE = regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,14}$`)
)

// Load reads and checks a containerlab topology file. It accepts the subset
// of containerlab's format that the runner can execute faithfully (kinds
// linux and bridge; cmd, exec, binds, env and sysctls on nodes; brief links
// with an optional mtu) and refuses the rest with an error naming the field.
func Load(path string) (*Topology, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("topology %s: %w", path, err)
	}
	data, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("read topology: %w", err)
	}
	t, err := Parse(filepath.Dir(abs), data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", abs, err)
	}
	t.Path = abs
	return t, nil
}

// rawTopology mirrors the top level of a containerlab file.
type rawTopology struct {
	Name     string    `yaml:"name"`
	Prefix   *string   `yaml:"prefix"`
	Mgmt     yaml.Node `yaml:"mgmt"`
	Topology struct {
		Nodes    yaml.Node `yaml:"nodes"`
		Links    []rawLink `yaml:"links"`
		Defaults yaml.Node `yaml:"defaults"`
		Kinds    yaml.Node `yaml:"kinds"`
		Groups   yaml.Node `yaml:"groups"`
	} `yaml:"topology"`
}

type rawLink struct {
	Endpoints []string `yaml:"endpoints"`
	MTU       int      `yaml:"mtu"`
}

// Parse parses topology text; dir is the folder relative bind sources
// resolve against.
func Parse(dir string, data []byte) (*Topology, error) {
	var raw rawTopology
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("decode topology: %w (the runner accepts name, prefix, mgmt and topology.nodes/links)", err)
	}
	for what, n := range map[string]yaml.Node{"topology.defaults": raw.Topology.Defaults,
		"topology.kinds": raw.Topology.Kinds, "topology.groups": raw.Topology.Groups} {
		if !n.IsZero() {
			return nil, fmt.Errorf("%s is not supported by the lab runner: set the fields on each node", what)
		}
	}
	if raw.Name == "" {
		return nil, errors.New("the topology has no name")
	}
	t := &Topology{Name: raw.Name, Dir: dir}
	if raw.Topology.Nodes.Kind != yaml.MappingNode {
		return nil, errors.New("topology.nodes must be a mapping of node names to nodes")
	}
	var errs []error
	content := raw.Topology.Nodes.Content
	for i := 0; i+1 < len(content); i += 2 {
		name := content[i].Value
		n, err := parseNode(dir, name, content[i+1])
		if err != nil {
			errs = append(errs, fmt.Errorf("line %d: node %s: %w", content[i].Line, name, err))
			continue
		}
		t.Nodes = append(t.Nodes, n)
	}
	for i, rl := range raw.Topology.Links {
		l, err := parseLink(t, rl)
		if err != nil {
			errs = append(errs, fmt.Errorf("links[%d]: %w", i, err))
			continue
		}
		t.Links = append(t.Links, l)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return t, checkInterfaces(t)
}

// parseNode decodes one node, refusing fields the runner cannot emulate.
func parseNode(dir, name string, v *yaml.Node) (*Node, error) {
	if !nodeNameRE.MatchString(name) {
		return nil, fmt.Errorf("name %q: use letters, digits, - and _", name)
	}
	if v.Kind != yaml.MappingNode {
		return nil, errors.New("must be a mapping")
	}
	for i := 0; i+1 < len(v.Content); i += 2 {
		k := v.Content[i].Value
		if !slices.Contains(nodeKeys(), k) && !slices.Contains(ignoredNodeKeys(), k) {
			return nil, fmt.Errorf("line %d: field %q is not emulated by the lab runner (supported: %s; ignored: %s)",
				v.Content[i].Line, k, strings.Join(nodeKeys(), ", "), strings.Join(ignoredNodeKeys(), ", "))
		}
	}
	var raw struct {
		Kind    string         `yaml:"kind"`
		Image   string         `yaml:"image"`
		Cmd     string         `yaml:"cmd"`
		Exec    []string       `yaml:"exec"`
		Binds   []string       `yaml:"binds"`
		Env     map[string]any `yaml:"env"`
		Sysctls map[string]any `yaml:"sysctls"`
	}
	// Decoding into the struct cannot fail on unknown keys: they were
	// checked above against the same list.
	if err := v.Decode(&raw); err != nil {
		return nil, err
	}
	n := &Node{Name: name, Kind: Kind(raw.Kind), Image: raw.Image}
	switch n.Kind {
	case KindLinux:
		if n.Image == "" {
			return nil, errors.New("kind linux needs an image")
		}
	case KindBridge:
		if len(name) > 15 {
			return nil, fmt.Errorf("a bridge node's name is the bridge's interface name: at most 15 characters, %q has %d", name, len(name))
		}
		if raw.Image != "" || raw.Cmd != "" || len(raw.Exec) > 0 || len(raw.Binds) > 0 || len(raw.Env) > 0 || len(raw.Sysctls) > 0 {
			return nil, errors.New("a bridge node takes no image, cmd, exec, binds, env or sysctls")
		}
		return n, nil
	case "":
		return nil, errors.New("kind is required (linux or bridge)")
	default:
		return nil, fmt.Errorf("kind %q is not emulated by the lab runner (linux, bridge)", raw.Kind)
	}
	var err error
	if raw.Cmd != "" {
		if n.Cmd, err = SplitCommand(raw.Cmd); err != nil {
			return nil, fmt.Errorf("cmd: %w", err)
		}
	}
	for i, e := range raw.Exec {
		argv, err := SplitCommand(e)
		if err != nil || len(argv) == 0 {
			return nil, fmt.Errorf("exec[%d] %q: %v", i, e, errOr(err, "empty command"))
		}
		n.Exec = append(n.Exec, argv)
	}
	for i, b := range raw.Binds {
		bind, err := parseBind(dir, b)
		if err != nil {
			return nil, fmt.Errorf("binds[%d]: %w", i, err)
		}
		n.Binds = append(n.Binds, bind)
	}
	if n.Env, err = scalarMap(raw.Env); err != nil {
		return nil, fmt.Errorf("env: %w", err)
	}
	if n.Sysctls, err = scalarMap(raw.Sysctls); err != nil {
		return nil, fmt.Errorf("sysctls: %w", err)
	}
	for k := range n.Sysctls {
		if !strings.HasPrefix(k, "net.") {
			return nil, fmt.Errorf("sysctls: %s is not a per-namespace net.* sysctl, which is all a container can set", k)
		}
	}
	return n, nil
}

func errOr(err error, msg string) string {
	if err != nil {
		return err.Error()
	}
	return msg
}

// parseBind reads "source:target[:ro|rw]".
func parseBind(dir, s string) (Bind, error) {
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
		return Bind{}, fmt.Errorf("%q is not source:target[:ro]", s)
	}
	b := Bind{Source: parts[0], Target: filepath.Clean(parts[1])}
	if len(parts) == 3 {
		switch parts[2] {
		case "ro":
			b.ReadOnly = true
		case "rw":
		default:
			return Bind{}, fmt.Errorf("%q: option %q is not ro or rw", s, parts[2])
		}
	}
	if !filepath.IsAbs(b.Target) || b.Target == "/" {
		return Bind{}, fmt.Errorf("%q: the target must be an absolute path below /", s)
	}
	if strings.HasPrefix(b.Source, "~/") {
		home, err := os.UserHomeDir()
		if err != nil {
			return Bind{}, err
		}
		b.Source = filepath.Join(home, b.Source[2:])
	}
	if !filepath.IsAbs(b.Source) {
		b.Source = filepath.Join(dir, b.Source)
	}
	return b, nil
}

// scalarMap turns a YAML mapping of scalars into strings, as containerlab
// does for env and sysctls.
func scalarMap(m map[string]any) (map[string]string, error) {
	if len(m) == 0 {
		return nil, nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		switch x := v.(type) {
		case string:
			out[k] = x
		case int:
			out[k] = strconv.Itoa(x)
		case bool:
			out[k] = strconv.FormatBool(x)
		case float64:
			out[k] = strconv.FormatFloat(x, 'f', -1, 64)
		default:
			return nil, fmt.Errorf("%s: value %v is not a scalar", k, v)
		}
	}
	return out, nil
}

// parseLink reads a brief link: endpoints ["a:eth1", "b:eth1"] and an mtu.
func parseLink(t *Topology, rl rawLink) (Link, error) {
	if len(rl.Endpoints) != 2 {
		return Link{}, fmt.Errorf("needs exactly two endpoints, has %d", len(rl.Endpoints))
	}
	var eps [2]Endpoint
	for i, s := range rl.Endpoints {
		node, iface, ok := strings.Cut(s, ":")
		if !ok || node == "" || iface == "" {
			return Link{}, fmt.Errorf("endpoint %q is not node:interface", s)
		}
		if t.Node(node) == nil {
			return Link{}, fmt.Errorf("endpoint %q: no node %s", s, node)
		}
		if !ifaceNameRE.MatchString(iface) {
			return Link{}, fmt.Errorf("endpoint %q: %q is not a valid interface name (at most 15 characters)", s, iface)
		}
		eps[i] = Endpoint{Node: node, Interface: iface}
	}
	if rl.MTU < 0 || rl.MTU > 65535 {
		return Link{}, fmt.Errorf("mtu %d out of range", rl.MTU)
	}
	return Link{A: eps[0], B: eps[1], MTU: rl.MTU}, nil
}

// checkInterfaces refuses names used twice in one namespace: per linux node,
// and on the container host for bridge nodes and their ports.
func checkInterfaces(t *Topology) error {
	seen := map[string]string{} // namespace/name -> endpoint
	for _, n := range t.Nodes {
		if n.Kind == KindBridge {
			seen["host/"+n.Name] = "bridge " + n.Name
		}
	}
	var errs []error
	for _, l := range t.Links {
		for _, e := range []Endpoint{l.A, l.B} {
			key := e.Node + "/" + e.Interface
			if t.Node(e.Node).Kind == KindBridge {
				key = "host/" + e.Interface
			}
			if prev, dup := seen[key]; dup {
				errs = append(errs, fmt.Errorf("endpoint %s: interface name already used by %s", e, prev))
			}
			seen[key] = e.String()
		}
		if l.A.Node == l.B.Node {
			errs = append(errs, fmt.Errorf("link %s - %s connects a node to itself", l.A, l.B))
		}
		if t.Node(l.A.Node).Kind == KindBridge && t.Node(l.B.Node).Kind == KindBridge {
			errs = append(errs, fmt.Errorf("link %s - %s connects two bridges", l.A, l.B))
		}
	}
	return errors.Join(errs...)
}
