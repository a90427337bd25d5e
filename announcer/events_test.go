package announcer

import (
	"strings"
	"testing"
)

// TestEventTextsBounded: an event's texts are cut to maxEventText, so every
// event fits a Watch client's default 4 MiB limit whatever the reason was.
func TestEventTextsBounded(t *testing.T) {
	l := NewEventLog(4)
	huge := strings.Repeat("é", 4<<20) // 8 MiB of two-byte characters
	e := l.Append(Event{Kind: EventReload, Subject: "c.yaml", To: "rejected", Reason: huge})
	if n := len(e.Reason); n > maxEventText+64 {
		t.Fatalf("reason kept %d bytes, want at most %d and a note", n, maxEventText)
	}
	if !strings.HasSuffix(e.Reason, "more bytes)") || !strings.HasPrefix(e.Reason, "éé") {
		t.Errorf("reason %q...%q does not say it was cut", e.Reason[:8], e.Reason[len(e.Reason)-30:])
	}
	if !strings.HasPrefix(e.Reason[maxEventText-2:], "é") && !strings.HasPrefix(e.Reason[maxEventText-1:], "é") {
		t.Errorf("cut inside a character")
	}
	events, _, _, _ := l.Since(0)
	if len(events) != 1 || events[0].Reason != e.Reason || events[0].Subject != "c.yaml" {
		t.Errorf("stored %+v", events)
	}
}
