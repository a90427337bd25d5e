package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/anycast-director/director/config"
)

// maxHookOutput bounds what a hook's output adds to an error message.
const maxHookOutput = 1024

// execHook runs a program per message. Its environment is only what is
// documented here (the daemon's own environment is not passed on):
//
//	DIRECTOR_NAME            the director that sends
//	DIRECTOR_NOTIFY_SUMMARY  the one-line summary
//	DIRECTOR_NOTIFY_COUNT    how many subjects changed
//	DIRECTOR_NOTIFY_LOST     changes lost before grouping (normally 0)
//	DIRECTOR_EVENT_KIND      the first subject's kind (backend, vip, peer, reload, director)
//	DIRECTOR_EVENT_SUBJECT   its subject ("tcp 10.0.2.21:80", "198.18.0.10")
//	DIRECTOR_EVENT_FROM      its state before (up, advertised, ...)
//	DIRECTOR_EVENT_TO        its state after (down, withdrawn, ...)
//	DIRECTOR_EVENT_CHANGES   how many changes it had in the window
//	DIRECTOR_EVENT_REASON    why (first line)
//	DIRECTOR_EVENT_WHO       the operator, for operator actions
//	PATH                     /usr/sbin:/usr/bin:/sbin:/bin
//
// The whole message is JSON on stdin. A non-zero exit is a failure (retried);
// at the timeout the hook's process group is killed.
type execHook struct {
	cmd      []string
	director string
}

func newExec(x config.ExecHook, director string) *execHook {
	return &execHook{cmd: x.Command, director: director}
}

func (x *execHook) name() string { return "exec " + x.cmd[0] }

func (x *execHook) send(ctx context.Context, m Message) error {
	in, err := json.Marshal(m)
	if err != nil {
		return permanentError{err}
	}
	cmd := exec.CommandContext(ctx, x.cmd[0], x.cmd[1:]...)
	cmd.Stdin = bytes.NewReader(in)
	cmd.Env = hookEnv(m)
	var out limitedBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = time.Second
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (killed at the timeout)", ctx.Err())
		}
		return fmt.Errorf("%s: %w: %s", x.cmd[0], err, strings.TrimSpace(out.String()))
	}
	return nil
}

// hookEnv is the documented environment of a hook.
func hookEnv(m Message) []string {
	env := []string{
		"PATH=/usr/sbin:/usr/bin:/sbin:/bin",
		"DIRECTOR_NAME=" + m.Director,
		"DIRECTOR_NOTIFY_SUMMARY=" + m.Summary,
		"DIRECTOR_NOTIFY_COUNT=" + strconv.Itoa(len(m.Entries)+m.Omitted),
		"DIRECTOR_NOTIFY_LOST=" + strconv.Itoa(m.Lost),
	}
	if len(m.Entries) > 0 {
		e := m.Entries[0]
		env = append(env,
			"DIRECTOR_EVENT_KIND="+e.Kind,
			"DIRECTOR_EVENT_SUBJECT="+e.Subject,
			"DIRECTOR_EVENT_FROM="+e.From,
			"DIRECTOR_EVENT_TO="+e.To,
			"DIRECTOR_EVENT_CHANGES="+strconv.Itoa(e.Changes),
			"DIRECTOR_EVENT_REASON="+firstLine(e.Reason),
			"DIRECTOR_EVENT_WHO="+e.Who)
	}
	return env
}

// limitedBuffer keeps the first maxHookOutput bytes written to it.
type limitedBuffer struct{ b bytes.Buffer }

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxHookOutput - l.b.Len(); room > 0 {
		l.b.Write(p[:min(room, len(p))])
	}
	return len(p), nil
}

func (l *limitedBuffer) String() string { return l.b.String() }
