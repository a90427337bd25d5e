// Command parsechild parses one configuration file and prints the first line
// of the result, then its own peak resident memory (VmHWM, in KiB).
// TestParseBounds builds it without the race detector and runs it per hostile
// file to measure Parse's peak memory and time on its own. (The rusage of a
// child is no good here: after a vfork it includes the parent's peak.)
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/anycast-director/director/config"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintln(os.Stderr, "usage: parsechild FILE")
		os.Exit(2)
	}
	data, err := os.ReadFile(os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, err := config.Parse(filepath.Base(os.Args[1]), data); err != nil {
		fmt.Println(strings.SplitN(err.Error(), "\n", 2)[0])
	} else {
		fmt.Println("loaded")
	}
	fmt.Println(peakRSS())
}

// peakRSS returns the VmHWM line of /proc/self/status ("VmHWM: 123 kB").
func peakRSS() string {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "VmHWM: unknown"
	}
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			return l
		}
	}
	return "VmHWM: unknown"
}
