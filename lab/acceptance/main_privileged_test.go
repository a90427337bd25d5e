//go:build linux && privileged

package acceptance

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anycast-director/director/lab/netlab"
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

// listenerNameEnv, when set, makes the listener write this name and a newline
// to every connection before closing it, so a client can tell who answered.
const listenerNameEnv = "DIRECTOR_ACCEPTANCE_LISTENER_NAME"

// clientEnv makes TestMain run the client helper instead of the tests:
// "HOST:PORT,N" (HOST in brackets for IPv6) opens N connections one after
// the other, reads each answer's first line and prints a JSON object of
// answers by name, with failures counted under "error".
const clientEnv = "DIRECTOR_ACCEPTANCE_CLIENT"

// directordBin is the directord binary built by TestMain; set once before
// the tests run and only read afterwards.
var directordBin string

func TestMain(m *testing.M) {
	if ports := os.Getenv(listenerEnv); ports != "" {
		os.Exit(runListener(ports))
	}
	if spec := os.Getenv(clientEnv); spec != "" {
		os.Exit(runClient(spec))
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
	name := os.Getenv(listenerNameEnv)
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
				if name != "" {
					c.SetWriteDeadline(time.Now().Add(2 * time.Second))
					c.Write([]byte(name + "\n"))
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

// runClient is the client helper's main (clientEnv).
func runClient(spec string) int {
	addr, count, ok := strings.Cut(spec, ",")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 1 || n > 1000 {
		fmt.Printf("error bad client spec %q: want HOST:PORT,N with N in 1..1000\n", spec)
		return 1
	}
	got := map[string]int{}
	for range n {
		got[answer(addr)]++
	}
	b, _ := json.Marshal(got)
	fmt.Println(string(b))
	return 0
}

// answer connects to addr and returns the first line it sends, or "error".
func answer(addr string) string {
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err != nil {
		return "error"
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(2 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "error"
	}
	return strings.TrimSpace(line)
}

// startListenerProc runs the listener helper in ns on ports (comma-separated),
// answering with name when it is not empty, and returns it with the number
// of output lines read up to its "ready".
func startListenerProc(t testing.TB, ns *netlab.NS, dirName, ports, name string) (*netlab.Proc, int) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{listenerEnv + "=" + ports}
	if name != "" {
		env = append(env, listenerNameEnv+"="+name)
	}
	p := ns.Start(dirName+"/listener", env, self)
	_, i, err := p.WaitOutput("ready", 0, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	return p, i + 1
}

// setListenerPort opens or closes one port of a listener helper and returns
// once the helper confirmed it (the socket is closed or listening); skip
// counts the helper's output lines read so far.
func setListenerPort(t testing.TB, p *netlab.Proc, skip *int, port string, open bool) {
	t.Helper()
	verb, done := "close", "closed"
	if open {
		verb, done = "open", "opened"
	}
	if err := p.Send(verb + " " + port); err != nil {
		t.Fatal(err)
	}
	_, i, err := p.WaitOutput(done+" "+port, *skip, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	*skip = i + 1
}

// routerConfig runs the real `directord router-config -flavor FLAVOR` on
// director files (options before them) and returns what it printed. The
// tests use it as printed: a router configuration that needed hand edits to
// work would be a bug of router-config.
func routerConfig(t testing.TB, flavor string, files []string, opts ...string) string {
	t.Helper()
	args := append(append([]string{"router-config", "-flavor", flavor}, opts...), files...)
	cmd := exec.Command(directordBin, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("directord %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}
