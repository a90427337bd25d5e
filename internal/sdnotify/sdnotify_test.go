package sdnotify

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listen opens a real notify socket like systemd's: a unixgram socket at a
// path, or in the abstract namespace for a name starting with '@'.
func listen(t *testing.T, name string) *net.UnixConn {
	t.Helper()
	c, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// receive reads one datagram.
func receive(t *testing.T, c *net.UnixConn) string {
	t.Helper()
	buf := make([]byte, 4096)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := c.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	return string(buf[:n])
}

func TestNotifyPathAndAbstractSockets(t *testing.T) {
	for _, name := range []string{
		filepath.Join(t.TempDir(), "notify"),
		fmt.Sprintf("@directord-test-%d-%d", os.Getpid(), time.Now().UnixNano()),
	} {
		t.Run(name[:1], func(t *testing.T) {
			sock := listen(t, name)
			t.Setenv("NOTIFY_SOCKET", name)
			n, err := FromEnv()
			if err != nil || n == nil {
				t.Fatalf("FromEnv: %v, %v", n, err)
			}
			if err := n.Notify(Ready, Status("serving 2 VIPs")); err != nil {
				t.Fatal(err)
			}
			if got, want := receive(t, sock), "READY=1\nSTATUS=serving 2 VIPs"; got != want {
				t.Errorf("got %q, want %q", got, want)
			}
			if err := n.Notify(Reloading()); err != nil {
				t.Fatal(err)
			}
			if got := receive(t, sock); !strings.HasPrefix(got, "RELOADING=1\nMONOTONIC_USEC=") {
				t.Errorf("got %q, want RELOADING=1 with MONOTONIC_USEC", got)
			}
		})
	}
}

func TestNotifyWithoutSystemd(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	n, err := FromEnv()
	if n != nil || err != nil {
		t.Fatalf("FromEnv without NOTIFY_SOCKET = %v, %v; want nil, nil", n, err)
	}
	if err := n.Notify(Ready); err != nil {
		t.Errorf("a nil Notifier must do nothing: %v", err)
	}
	if _, err := New("relative/path"); err == nil {
		t.Errorf("a relative socket name was accepted")
	}
	// A socket that is gone is an error the caller can log.
	gone, _ := New(filepath.Join(t.TempDir(), "gone"))
	if err := gone.Notify(Ready); err == nil {
		t.Errorf("sending to a missing socket succeeded")
	}
}

func TestWatchdogInterval(t *testing.T) {
	self := fmt.Sprint(os.Getpid())
	for _, c := range []struct {
		usec, pid string
		want      time.Duration
		err       bool
	}{
		{"", "", 0, false},
		{"30000000", "", 30 * time.Second, false},
		{"30000000", self, 30 * time.Second, false},
		{"30000000", "1", 0, false}, // for another process
		{"abc", "", 0, true},
		{"0", "", 0, true},
	} {
		t.Setenv("WATCHDOG_USEC", c.usec)
		t.Setenv("WATCHDOG_PID", c.pid)
		got, err := WatchdogInterval()
		if got != c.want || (err != nil) != c.err {
			t.Errorf("WATCHDOG_USEC=%q WATCHDOG_PID=%q: %v, %v; want %v, error %v", c.usec, c.pid, got, err, c.want, c.err)
		}
	}
}
