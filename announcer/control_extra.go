package announcer

import "context"

// Sync returns once the loop has published the pass that follows every
// command sent before it, so Status reflects them. The control API calls it
// after an override, so a client that reads the status right after a drain
// sees the drain. The loop takes commands only between passes (a command,
// then a pass, then the next command), which makes a no-op command such a
// barrier. Owned by the control plane (issue 5).
func (l *Loop) Sync(ctx context.Context) error {
	return l.do(ctx, func(*state) error { return nil })
}
