// Package labkit holds what the end-to-end tests, the demo and labrun share
// about the lab: building the lab image's programs, how the runner emulates
// the topology's images, and readers for what the lab's nodes show (the
// router's FIB, IPVS tables, directorctl status).
package labkit

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

// Image repositories of containerlab.yml.
const (
	// LabImage is built by lab/images/Dockerfile: Debian with iproute2,
	// ipvsadm and the programs of Programs in /usr/local/bin.
	LabImage = "anycast-director/lab"
	// FRRImage is FRR's own image.
	FRRImage = "quay.io/frrouting/frr"
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

// Images tells the runner how to emulate the topology's images with this
// machine's userspace: the lab image is the machine plus the programs in
// binDir at /usr/local/bin; FRR's image is the machine's FRR started from
// the bound daemons file.
func Images(binDir string) []runner.Image {
	return []runner.Image{
		{Repository: LabImage, Role: runner.RoleCommand, Files: []runner.Bind{{Source: binDir, Target: "/usr/local/bin", ReadOnly: true}}},
		{Repository: FRRImage, Role: runner.RoleFRR},
	}
}
