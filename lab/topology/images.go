package topology

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/anycast-director/director/lab/runner"
)

// Image repositories of the topology files.
const (
	// LabImage is built by lab/images/Dockerfile: Debian with iproute2,
	// ipvsadm and the programs of Programs in /usr/local/bin.
	LabImage = "anycast-director/lab"
	// FRRImage is FRR's own image.
	FRRImage = "quay.io/frrouting/frr"
	// HostImage is what the test topologies (tests/) run: the machine
	// itself, its files and programs, with nothing started until the test
	// starts it. It exists only for the lab runner.
	HostImage = "anycast-director/host"
)

// Programs returns the Go programs the lab image contains, by package path.
func Programs() []string {
	return []string{"./cmd/directord", "./cmd/directorctl", "./lab/cmd/labserver", "./lab/cmd/labclient"}
}

// ModuleRoot finds the repository root (the folder with go.mod) from the
// working directory up.
func ModuleRoot() (string, error) {
	wd, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for d := wd; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d, nil
		}
		if filepath.Dir(d) == d {
			return "", errors.New("no go.mod above the working directory: run from inside the repository")
		}
	}
}

// Build compiles the lab image's programs into dir, as the Dockerfile does.
func Build(ctx context.Context, root, dir string) error {
	args := append([]string{"build", "-o", dir + "/"}, Programs()...)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// Images tells the runner how to emulate the topologies' images with this
// machine's userspace: the lab image is the machine plus the programs in
// binDir at /usr/local/bin; FRR's image is the machine's FRR started from
// the bound daemons file; the host image is the machine itself.
func Images(binDir string) []runner.Image {
	return []runner.Image{
		{Repository: LabImage, Role: runner.RoleCommand, Files: []runner.Bind{{Source: binDir, Target: "/usr/local/bin", ReadOnly: true}}},
		{Repository: FRRImage, Role: runner.RoleFRR},
		{Repository: HostImage, Role: runner.RoleIdle, HostFiles: true},
	}
}
