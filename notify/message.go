package notify

import (
	"fmt"
	"slices"
	"strings"
	"time"
)

// maxEntries bounds the lines of one message; the rest is counted in Omitted.
const maxEntries = 200

// Entry is one subject's changes within a message: the state it started
// from, the state it ended in, and how many changes happened in between.
type Entry struct {
	Kind    string `json:"kind"`
	Subject string `json:"subject"`
	// From is the state before the first change, To the state after the last.
	From string `json:"from"`
	To   string `json:"to"`
	// Changes counts the changes merged into this entry (more than one:
	// the subject flapped).
	Changes int `json:"changes"`
	// Reason and Who are the last change's.
	Reason string `json:"reason,omitempty"`
	Who    string `json:"who,omitempty"`
	// First and Last are the times of the first and the last change.
	First time.Time `json:"first"`
	Last  time.Time `json:"last"`
	// Directors lists where it was seen.
	Directors []string `json:"directors"`
}

// Message is what a channel delivers: the changes of one grouping window,
// or a digest of several when the channel's rate limit held them back.
type Message struct {
	// Version is the message format's version (1).
	Version int `json:"version"`
	// Director is the sender.
	Director string `json:"director"`
	// Summary is one line for a subject or a chat message.
	Summary string `json:"summary"`
	// Since and Until bound the changes' times.
	Since time.Time `json:"since"`
	Until time.Time `json:"until"`
	// Entries are the changes, in order of first occurrence.
	Entries []Entry `json:"changes"`
	// Omitted counts entries left out beyond the first 200.
	Omitted int `json:"omitted"`
	// Lost counts changes that were lost before they could be grouped (the
	// event log or the notifier's queue overflowed).
	Lost int `json:"lost_events"`
}

// entryKey identifies the subject of an entry.
type entryKey struct{ kind, subject string }

// builder accumulates events and messages into one message.
type builder struct {
	entries map[entryKey]*Entry
	order   []entryKey
	omitted int
	lost    int
}

func newBuilder() *builder { return &builder{entries: map[entryKey]*Entry{}} }

// empty reports whether there is nothing to send.
func (b *builder) empty() bool { return len(b.order) == 0 && b.omitted == 0 && b.lost == 0 }

// add merges one event.
func (b *builder) add(e Event) {
	b.merge(Entry{Kind: e.Kind, Subject: e.Subject, From: e.From, To: e.To, Changes: 1,
		Reason: e.Reason, Who: e.Who, First: e.Time, Last: e.Time, Directors: []string{e.Director}})
}

// merge folds an entry in: the earlier From, the later To and reason, the
// sum of the changes and the union of the directors.
func (b *builder) merge(in Entry) {
	k := entryKey{in.Kind, in.Subject}
	cur, ok := b.entries[k]
	if !ok {
		if len(b.order) >= maxEntries {
			b.omitted++
			return
		}
		in.Directors = slices.Clone(in.Directors)
		b.entries[k] = &in
		b.order = append(b.order, k)
		return
	}
	if in.First.Before(cur.First) {
		cur.First, cur.From = in.First, in.From
	}
	if !in.Last.Before(cur.Last) {
		cur.Last, cur.To, cur.Reason, cur.Who = in.Last, in.To, in.Reason, in.Who
	}
	cur.Changes += in.Changes
	for _, d := range in.Directors {
		if !slices.Contains(cur.Directors, d) {
			cur.Directors = append(cur.Directors, d)
		}
	}
	slices.Sort(cur.Directors)
}

// mergeMessage folds a whole message in (a digest, or a retry that picks up
// what happened meanwhile).
func (b *builder) mergeMessage(m Message) {
	for _, e := range m.Entries {
		b.merge(e)
	}
	b.omitted += m.Omitted
	b.lost += m.Lost
}

// filtered returns a builder with only the entries of the given kinds.
func (b *builder) filtered(kinds []string) *builder {
	out := newBuilder()
	for _, k := range b.order {
		if slices.Contains(kinds, k.kind) {
			out.merge(*b.entries[k])
		}
	}
	out.lost = b.lost
	if out.empty() {
		return out
	}
	out.omitted = b.omitted
	return out
}

// message renders the accumulated changes, sent by director.
func (b *builder) message(director string) Message {
	m := Message{Version: 1, Director: director, Omitted: b.omitted, Lost: b.lost}
	for _, k := range b.order {
		e := *b.entries[k]
		e.Directors = slices.Clone(e.Directors)
		if m.Since.IsZero() || e.First.Before(m.Since) {
			m.Since = e.First
		}
		if e.Last.After(m.Until) {
			m.Until = e.Last
		}
		m.Entries = append(m.Entries, e)
	}
	m.Summary = summary(m)
	return m
}

// Line describes one entry for people: "backend tcp 10.0.2.21:80: up ->
// down on d1 (connect: connection refused)".
func (e Entry) Line() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s: ", e.Kind, e.Subject)
	switch {
	case e.Changes > 1 && e.From == e.To:
		fmt.Fprintf(&b, "%s, flapped (%d changes, now %s)", e.From, e.Changes, e.To)
	case e.Changes > 1:
		fmt.Fprintf(&b, "%s -> %s (%d changes)", orNone(e.From), e.To, e.Changes)
	default:
		fmt.Fprintf(&b, "%s -> %s", orNone(e.From), e.To)
	}
	if len(e.Directors) > 0 {
		fmt.Fprintf(&b, " on %s", strings.Join(e.Directors, ","))
	}
	if e.Who != "" {
		fmt.Fprintf(&b, " by %s", e.Who)
	}
	if e.Reason != "" {
		fmt.Fprintf(&b, " (%s)", firstLine(e.Reason))
	}
	return b.String()
}

// Text is the message's plain-text body: the summary, then one line per
// entry with its times.
func (m Message) Text() string {
	var b strings.Builder
	b.WriteString(m.Summary + "\n\n")
	for _, e := range m.Entries {
		fmt.Fprintf(&b, "%s  %s\n", e.Last.Format(time.RFC3339), e.Line())
		if strings.Contains(e.Reason, "\n") {
			b.WriteString("    " + strings.ReplaceAll(strings.TrimSpace(e.Reason), "\n", "\n    ") + "\n")
		}
	}
	if m.Omitted > 0 {
		fmt.Fprintf(&b, "... and %d more subjects (the message keeps the first %d)\n", m.Omitted, maxEntries)
	}
	if m.Lost > 0 {
		fmt.Fprintf(&b, "%d changes were lost before they could be grouped; check `directorctl status`\n", m.Lost)
	}
	return b.String()
}

// summary is one line: the only change, or the count and the first few.
func summary(m Message) string {
	prefix := "[" + m.Director + "] "
	n := len(m.Entries) + m.Omitted
	switch {
	case n == 0:
		return fmt.Sprintf("%s%d changes lost", prefix, m.Lost)
	case n == 1:
		return prefix + short(m.Entries[0])
	}
	parts := make([]string, 0, 3)
	for _, e := range m.Entries[:min(3, len(m.Entries))] {
		parts = append(parts, short(e))
	}
	s := fmt.Sprintf("%s%d changes: %s", prefix, n, strings.Join(parts, ", "))
	if n > 3 {
		s += ", ..."
	}
	return s
}

// short is an entry in a few words: "backend tcp 10.0.2.21:80 down on d1,d2".
func short(e Entry) string {
	s := e.Kind + " " + e.Subject + " " + e.To
	if e.Changes > 1 {
		s += fmt.Sprintf(" (%d changes)", e.Changes)
	}
	if len(e.Directors) > 1 {
		s += " on " + strings.Join(e.Directors, ",")
	}
	return s
}

func orNone(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i] + " ..."
	}
	return s
}
