package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/anycast-director/director/internal/buildinfo"
)

// versionCmd is `directorctl version`: the same as --version, as a command
// like directord's.
func (a *app) versionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print directorctl's version, commit, Go version and build date",
		Args:  exactArgs(0, "no arguments"),
		RunE: func(*cobra.Command, []string) error {
			fmt.Fprint(a.stdout, "directorctl "+buildinfo.Get().String())
			return nil
		},
	}
}

// versionTemplate makes --version print what `directorctl version` prints.
func versionTemplate() string {
	return "directorctl " + buildinfo.Get().String()
}
