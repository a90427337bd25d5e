// Command directord is the Anycast Director daemon: it health-checks real
// servers, programs IPVS and announces VIPs only while it can serve them.
//
//	directord run -config FILE         run the daemon
//	directord check-config FILE        validate FILE and print the desired state
//	directord router-config -flavor frr|bird FILE...
//	                                   print the routers' side of the peering
//	directord realserver add|remove VIP  prepare a DR real server (VIP on lo, ARP sysctls)
//	directord version                  print the version
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/anycast-director/director/internal/buildinfo"
)

// Exit codes shared by the subcommands.
const (
	exitOK    = 0
	exitFail  = 1 // runtime failure
	exitUsage = 2 // bad usage or invalid configuration
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches a subcommand and returns the process exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		usage(stderr)
		return exitUsage
	}
	switch args[0] {
	case "run":
		return cmdRun(args[1:], stdout, stderr)
	case "check-config":
		return cmdCheckConfig(args[1:], stdout, stderr)
	case "router-config":
		return cmdRouterConfig(args[1:], stdout, stderr)
	case "realserver":
		return cmdRealServer(args[1:], stdout, stderr)
	case "completion":
		return cmdCompletion(args[1:], stdout, stderr)
	case "__man": // hidden: make package generates the manual pages with it
		return cmdManual(args[1:], stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprint(stdout, "directord "+buildinfo.Get().String())
		return exitOK
	case "help", "-h", "-help", "--help":
		usage(stdout)
		return exitOK
	}
	fmt.Fprintf(stderr, "directord: unknown command %q\n\n", args[0])
	usage(stderr)
	return exitUsage
}
