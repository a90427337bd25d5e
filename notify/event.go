// Package notify tells people about state changes: a real server went down
// or came back, a VIP was advertised or withdrawn, a BGP peer went up or
// down, a reload was rejected, the director was drained or withdrew its VIPs.
//
// Changes are grouped over a window into one message (one line per subject,
// so a flapping real server is one line with a count), and each channel
// (webhook, e-mail, exec hook) has a token bucket: once it is empty, what
// happens is held and sent as one digest when a token is back. Delivery runs
// on the channel's own goroutine with retries and backoff; Submit never
// blocks, so a slow or failing channel cannot delay whoever reports changes
// (the announcer loop appends to its event log and Follow reads it from
// another goroutine).
package notify

import (
	"strings"
	"time"
	"unicode/utf8"

	"github.com/anycast-director/director/announcer"
)

// maxReason bounds a reason carried in a message: a rejected reload's reason
// lists every error of the file.
const maxReason = 2000

// Event is one change as notifications report it.
type Event struct {
	// Director is where it happened.
	Director string
	// Time is when.
	Time time.Time
	// Kind is one of config.NotifyKinds: backend, vip, peer, reload, director.
	Kind string
	// Subject is what changed ("tcp 10.0.2.21:80", "198.18.0.10").
	Subject string
	// From and To are the states ("up", "down", "advertised", "drained", ...).
	From, To string
	// Reason explains the change; Who is the operator, for their actions.
	Reason, Who string
}

// FromAnnouncer turns an event-log entry of the named director into a
// notification. ok is false for changes that are not notified: a backend's
// first verdict "up" after start, peer state steps other than reaching or
// leaving established, successful reloads and overrides other than a
// director drain.
func FromAnnouncer(director string, e announcer.Event) (Event, bool) {
	out := Event{Director: director, Time: e.Time, Subject: e.Subject, From: e.From, To: e.To,
		Reason: clip(e.Reason), Who: e.Who}
	switch e.Kind {
	case announcer.EventHealth:
		out.Kind = "backend"
		if e.To == "unknown" || (e.From == "unknown" && e.To == "up") {
			return Event{}, false
		}
	case announcer.EventVIP:
		out.Kind = "vip"
	case announcer.EventPeer:
		out.Kind = "peer"
		switch {
		case e.To == "established" && e.From != "established":
			out.From, out.To = "down", "up"
		case e.From == "established" && e.To != "established":
			out.From, out.To = "up", "down"
		default:
			return Event{}, false
		}
	case announcer.EventReload:
		if e.To != "rejected" {
			return Event{}, false
		}
		out.Kind = "reload"
	case announcer.EventOverride:
		switch e.Subject {
		case "drain director":
			out.From, out.To = "", "drained"
		case "undrain director":
			out.From, out.To = "drained", "undrained"
		default:
			return Event{}, false
		}
		out.Kind, out.Subject = "director", director
	case announcer.EventDirector:
		out.Kind = "director"
	default:
		return Event{}, false
	}
	return out, true
}

// clip bounds s to maxReason bytes on a rune boundary.
func clip(s string) string {
	if len(s) <= maxReason {
		return s
	}
	cut := maxReason
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return strings.TrimSpace(s[:cut]) + " ... (cut)"
}
