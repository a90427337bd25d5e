package main

import (
	"bufio"
	"io"
	"net/http"
	"os/exec"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/anycast-director/director/control/controltest"
)

// TestConsoleCommand: the real binary serves the console for the local
// director, its view has the director's VIPs, and SIGTERM stops it with 0.
func TestConsoleCommand(t *testing.T) {
	h := controltest.Start(t, controltest.Options{})
	cmd := exec.Command(binary, "--socket", h.Sock, "console", "--listen", "127.0.0.1:0", "--poll", "100ms")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatalf("no first line: %v (stderr %s)", err, stderr.String())
	}
	m := regexp.MustCompile(`^console: (http://127\.0\.0\.1:\d+/) \(1 directors, read-only\)`).FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("first line %q", line)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get(m[1] + "api/view")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.Contains(string(body), `"address":"198.18.0.10"`) && strings.Contains(string(body), `"name":"local"`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the view never showed the local director's VIP: %s", body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v (stderr %s)", err, stderr.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("console did not stop within 10s of SIGTERM")
	}
}

// TestConsoleUsage: mistakes on the command line exit 2 with what to do.
func TestConsoleUsage(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"console", "--director", "d1"}, "use NAME=ADDRESS"},
		{[]string{"console", "--director", "d1=d1.example:9470"}, "give --cert, --key and --ca"},
		{[]string{"console", "--director", "d1=nowhere"}, "neither a socket path"},
		{[]string{"console", "--listen", "0.0.0.0:0"}, "needs --tls-cert, --tls-key and --users"},
		{[]string{"console", "--director", "a=/x", "--director", "a=/y"}, "given twice"},
		{[]string{"console", "--users", "/nonexistent"}, "users file"},
	} {
		_, stderr, code := ctl(t, nil, tc.args...)
		if code != exitUsage || !strings.Contains(stderr, tc.want) {
			t.Errorf("%v: exit %d\n%s\nwant 2 and %q", tc.args, code, stderr, tc.want)
		}
	}
}

// TestHashPassword: the hash verifies the password; short ones are refused.
func TestHashPassword(t *testing.T) {
	run := func(stdin string) (string, string, int) {
		cmd := exec.Command(binary, "console", "hash-password")
		cmd.Stdin = strings.NewReader(stdin)
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		code := 0
		if x, ok := err.(*exec.ExitError); ok {
			code = x.ExitCode()
		}
		return o.String(), e.String(), code
	}
	out, stderr, code := run("correct horse battery\n")
	if code != 0 || bcrypt.CompareHashAndPassword([]byte(strings.TrimSpace(out)), []byte("correct horse battery")) != nil {
		t.Errorf("hash-password: exit %d, %q %s", code, out, stderr)
	}
	if _, stderr, code := run("short\n"); code != exitUsage || !strings.Contains(stderr, "at least 8") {
		t.Errorf("a short password: exit %d %s", code, stderr)
	}
}
