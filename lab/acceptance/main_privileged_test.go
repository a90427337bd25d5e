//go:build linux && privileged

package acceptance

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// The tests run two kinds of processes inside the director namespaces, both
// started by netlab under `ip netns exec`:
//
//   - directord itself, built from this module once per test binary (TestMain),
//     so `go test` alone tests the current source, not a stale bin/;
//   - the services' health targets: this test binary again, started with
//     listenerEnv set, which makes TestMain run a tiny TCP listener instead of
//     the tests (entering a namespace from a multi-threaded Go test is
//     unreliable, re-executing is not).

// listenerEnv names the ports (comma-separated) the helper listens on, on
// every address of its namespace (one dual-stack socket per port).
const listenerEnv = "DIRECTOR_ACCEPTANCE_LISTENER"

// directordBin is the directord binary built by TestMain; set once before
// the tests run and only read afterwards.
var directordBin string

func TestMain(m *testing.M) {
	if ports := os.Getenv(listenerEnv); ports != "" {
		os.Exit(runListener(ports))
	}
	os.Exit(runTests(m))
}

// runTests builds directord into a temporary folder and runs the tests.
// Without root the tests skip (netlab.New says why), so nothing is built.
func runTests(m *testing.M) int {
	if os.Geteuid() != 0 {
		return m.Run()
	}
	dir, err := os.MkdirTemp("", "acceptance-bin-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "acceptance: temporary folder for directord: %v\n", err)
		return 1
	}
	defer os.RemoveAll(dir)
	bin := filepath.Join(dir, "directord")
	cmd := exec.Command(goTool(), "build", "-o", bin, "github.com/anycast-director/director/cmd/directord")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "acceptance: go build of cmd/directord failed (the tests run the real daemon): %v\n%s", err, out)
		return 1
	}
	directordBin = bin
	return m.Run()
}

// goTool finds the go command: on PATH (make, CI), else in the toolchain
// that built this test binary.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}

// runListener is the helper's main: it listens on every port of spec, says
// "ready", then obeys "close PORT" and "open PORT" lines on stdin, answering
// "closed PORT" and "opened PORT" once the socket is closed or listening. A
// closed port refuses connections (RST), so a tcp health check fails at its
// next probe.
func runListener(spec string) int {
	var mu sync.Mutex
	say := func(format string, args ...any) {
		mu.Lock()
		defer mu.Unlock()
		fmt.Printf(format+"\n", args...)
	}
	open := map[string]net.Listener{}
	listen := func(port string) error {
		l, err := net.Listen("tcp", ":"+port)
		if err != nil {
			return fmt.Errorf("listen on port %s: %w", port, err)
		}
		open[port] = l
		go func() {
			for {
				c, err := l.Accept()
				if err != nil {
					return // closed
				}
				c.Close()
			}
		}()
		return nil
	}
	for _, p := range strings.Split(spec, ",") {
		if err := listen(p); err != nil {
			say("error %v", err)
			return 1
		}
	}
	say("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 {
			say("error bad command %q: want close PORT or open PORT", sc.Text())
			return 1
		}
		switch f[0] {
		case "close":
			l, ok := open[f[1]]
			if !ok {
				say("error port %s is not open", f[1])
				return 1
			}
			l.Close()
			delete(open, f[1])
			say("closed %s", f[1])
		case "open":
			if _, ok := open[f[1]]; ok {
				say("error port %s is open already", f[1])
				return 1
			}
			if err := listen(f[1]); err != nil {
				say("error %v", err)
				return 1
			}
			say("opened %s", f[1])
		default:
			say("error unknown command %q", f[0])
			return 1
		}
	}
	return 0
}
