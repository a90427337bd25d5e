package progress

import (
	"context"
	"testing"
)

func TestReportCallsTheContextsFunction(t *testing.T) {
	n := 0
	ctx := With(context.Background(), func() { n++ })
	Report(ctx)
	Report(context.WithoutCancel(ctx)) // derived contexts carry it too
	if n != 2 {
		t.Errorf("reported %d times, want 2", n)
	}
	Report(context.Background()) // no function: nothing happens, no panic
}
