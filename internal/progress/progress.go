// Package progress lets a long operation say that it is still moving to
// whoever waits on it, through the context it was handed: the announcer's
// watchdog judges a pass stuck when it stops making progress, not when it is
// merely long (a first pass that programs 10,000 IPVS destinations under
// emulation takes longer than the watchdog's bound, one write at a time).
package progress

import "context"

type key struct{}

// With returns a context whose Report calls report. report must be cheap and
// safe to call from any goroutine.
func With(ctx context.Context, report func()) context.Context {
	return context.WithValue(ctx, key{}, report)
}

// Report tells the function ctx carries (With) that the operation made
// progress: call it after each step that completed (a kernel write, a read,
// one service programmed). Without one it does nothing.
func Report(ctx context.Context) {
	if f, ok := ctx.Value(key{}).(func()); ok {
		f()
	}
}
