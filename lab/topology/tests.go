package topology

import (
	"embed"
	"fmt"
	"io/fs"
	"path"
	"strings"

	"github.com/anycast-director/director/lab/runner"
)

// testFiles are the test topologies: small containerlab files whose nodes
// run the host image, so each test starts the daemons it needs itself.
//
//go:embed tests/*.clab.yml
var testFiles embed.FS

// Test loads a test topology by name: tests/NAME.clab.yml.
func Test(name string) (*runner.Topology, error) {
	file := path.Join("tests", name+".clab.yml")
	data, err := testFiles.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("test topology %s: %w (have: %s)", name, err, strings.Join(TestNames(), ", "))
	}
	t, err := runner.Parse("/", data)
	if err != nil {
		return nil, fmt.Errorf("lab/topology/%s: %w", file, err)
	}
	t.Path = "lab/topology/" + file
	return t, nil
}

// TestNames lists the test topologies.
func TestNames() []string {
	var names []string
	files, _ := fs.Glob(testFiles, "tests/*.clab.yml")
	for _, f := range files {
		names = append(names, strings.TrimSuffix(path.Base(f), ".clab.yml"))
	}
	return names
}
