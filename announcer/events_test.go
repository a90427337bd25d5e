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

// TestEventLogGrowsWithEvents: a log of 4,096 events holds memory for the
// events it has, not for 4,096 (half a MiB) from the start, and still wraps
// at its size.
func TestEventLogGrowsWithEvents(t *testing.T) {
	l := NewEventLog(100)
	for range 10 {
		l.Append(Event{Kind: "backend"})
	}
	if c := cap(l.ring); c >= 100 {
		t.Errorf("10 events hold a ring of capacity %d, want it to grow with the events", c)
	}
	for range 200 {
		l.Append(Event{Kind: "backend"})
	}
	events, newest, lost, _ := l.Since(0)
	if len(events) != 100 || !lost || newest != 210 || events[0].Seq != 111 || events[99].Seq != 210 {
		t.Errorf("after 210 events: %d events (%d..%d), newest %d, lost %v; want the last 100, 111..210, lost", len(events), events[0].Seq, events[len(events)-1].Seq, newest, lost)
	}
}
