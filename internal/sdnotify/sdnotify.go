// Package sdnotify speaks systemd's service notification protocol
// (sd_notify(3)) without libsystemd: each message is one datagram of
// newline-separated KEY=VALUE assignments sent to the Unix datagram socket
// named by $NOTIFY_SOCKET (a path, or an abstract name written with a leading
// '@'). It also reads the watchdog settings systemd passes ($WATCHDOG_USEC,
// $WATCHDOG_PID).
//
// Outside systemd (no $NOTIFY_SOCKET) every call is a no-op, so the daemon
// uses the same code path in a terminal, in tests and under the unit.
package sdnotify

import (
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// Messages the daemon sends (sd_notify(3)).
const (
	// Ready says start-up is complete (or a reload finished).
	Ready = "READY=1"
	// Stopping says a graceful shutdown began.
	Stopping = "STOPPING=1"
	// Watchdog feeds the watchdog.
	Watchdog = "WATCHDOG=1"
)

// Notifier sends notifications to the service manager. The zero value and a
// nil *Notifier do nothing.
type Notifier struct {
	addr *net.UnixAddr
}

// FromEnv returns a Notifier for $NOTIFY_SOCKET, or nil when the process was
// not started by a service manager that asked for notifications. The
// variable stays in the environment: child processes (exec health checks)
// that send to it are ignored by systemd under NotifyAccess=main.
func FromEnv() (*Notifier, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil, nil
	}
	return New(name)
}

// New returns a Notifier for the socket name as systemd writes it in
// $NOTIFY_SOCKET: an absolute path, or "@name" for an abstract socket.
func New(name string) (*Notifier, error) {
	switch {
	case strings.HasPrefix(name, "/"), strings.HasPrefix(name, "@"):
	default:
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q is neither an absolute path nor an abstract socket name (@...)", name)
	}
	// The net package maps a leading '@' to the abstract namespace itself.
	return &Notifier{addr: &net.UnixAddr{Name: name, Net: "unixgram"}}, nil
}

// Notify sends one message made of the given assignments ("READY=1",
// "STATUS=..."). Each call opens and closes its own socket, so it is safe for
// concurrent use and survives the manager re-creating its socket.
func (n *Notifier) Notify(assignments ...string) error {
	if n == nil || n.addr == nil {
		return nil
	}
	conn, err := net.DialUnix("unixgram", nil, n.addr)
	if err != nil {
		return fmt.Errorf("sd_notify: connect to %s: %w", n.addr.Name, err)
	}
	defer conn.Close()
	if _, err := conn.Write([]byte(strings.Join(assignments, "\n"))); err != nil {
		return fmt.Errorf("sd_notify: send to %s: %w", n.addr.Name, err)
	}
	return nil
}

// Reloading is the message that starts a reload: RELOADING=1 with the
// CLOCK_MONOTONIC time systemd 253 and later require for Type=notify-reload
// (older versions ignore the extra field).
func Reloading() string {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		return "RELOADING=1"
	}
	return fmt.Sprintf("RELOADING=1\nMONOTONIC_USEC=%d", ts.Nano()/1000)
}

// ExtendTimeout asks the service manager to wait d longer for the current
// start, reload or stop to finish (EXTEND_TIMEOUT_USEC, systemd 236 and
// later): a graceful shutdown may legitimately outlast TimeoutStopSec.
func ExtendTimeout(d time.Duration) string {
	return fmt.Sprintf("EXTEND_TIMEOUT_USEC=%d", d.Microseconds())
}

// Status is a one-line status text for `systemctl status`.
func Status(text string) string {
	return "STATUS=" + strings.ReplaceAll(text, "\n", " ")
}

// WatchdogInterval returns systemd's watchdog timeout for this process
// ($WATCHDOG_USEC, honouring $WATCHDOG_PID), or 0 when none is set. Feed the
// watchdog at half this interval, as sd_watchdog_enabled(3) advises.
func WatchdogInterval() (time.Duration, error) {
	usec := os.Getenv("WATCHDOG_USEC")
	if usec == "" {
		return 0, nil
	}
	if pid := os.Getenv("WATCHDOG_PID"); pid != "" && pid != strconv.Itoa(os.Getpid()) {
		return 0, nil // meant for another process (the one that exec'd us)
	}
	n, err := strconv.ParseUint(usec, 10, 63)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("WATCHDOG_USEC=%q is not a positive number of microseconds", usec)
	}
	return time.Duration(n) * time.Microsecond, nil
}
