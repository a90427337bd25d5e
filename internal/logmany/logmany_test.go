package logmany

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
)

// logged runs Log over n items and returns the Info and Debug lines.
func logged(t *testing.T, n int, reason string) (info, debug []string) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug,
		ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
			if a.Key == slog.TimeKey {
				return slog.Attr{}
			}
			return a
		}}))
	items := make([]string, n)
	for i := range items {
		items[i] = fmt.Sprintf("198.19.1.%d", i+1)
	}
	Log(log, "VIP withdrawn", "VIPs withdrawn", "vip", items, reason)
	for _, l := range strings.Split(strings.TrimSpace(buf.String()), "\n") {
		switch {
		case l == "":
		case strings.HasPrefix(l, "level=INFO "):
			info = append(info, l)
		case strings.HasPrefix(l, "level=DEBUG "):
			debug = append(debug, l)
		default:
			t.Fatalf("unexpected line %q", l)
		}
	}
	return info, debug
}

func TestFewItemsOneLineEach(t *testing.T) {
	info, debug := logged(t, MaxLines, "shutting down")
	if len(info) != MaxLines || len(debug) != 0 {
		t.Fatalf("%d items: %d info and %d debug lines, want %d and 0:\n%s", MaxLines, len(info), len(debug), MaxLines, strings.Join(info, "\n"))
	}
	want := `level=INFO msg="VIP withdrawn" vip=198.19.1.1 reason="shutting down"`
	if info[0] != want {
		t.Errorf("first line %q, want %q", info[0], want)
	}
}

func TestManyItemsOneSummary(t *testing.T) {
	info, debug := logged(t, MaxLines+1, "shutting down")
	if len(info) != 1 || len(debug) != MaxLines+1 {
		t.Fatalf("%d items: %d info and %d debug lines, want 1 and %d", MaxLines+1, len(info), len(debug), MaxLines+1)
	}
	want := `level=INFO msg="VIPs withdrawn" count=9 first=198.19.1.1 last=198.19.1.9 reason="shutting down; each is logged at debug level"`
	if info[0] != want {
		t.Errorf("summary %q, want %q", info[0], want)
	}
	if !strings.Contains(debug[8], "vip=198.19.1.9") {
		t.Errorf("last debug line %q lacks the last item", debug[8])
	}
}

func TestNoReason(t *testing.T) {
	info, _ := logged(t, 1, "")
	if want := `level=INFO msg="VIP withdrawn" vip=198.19.1.1`; info[0] != want {
		t.Errorf("line %q, want %q", info[0], want)
	}
	info, _ = logged(t, 20, "")
	if !strings.HasSuffix(info[0], `reason="each is logged at debug level"`) {
		t.Errorf("summary %q does not say each is at debug", info[0])
	}
}
