// Package rules holds the limits of operator override requests. directord
// enforces them on every override call (package control) and directorctl
// checks its flags against the same functions before it sends anything, so
// both refuse the same values with the same words. It depends on nothing of
// the daemon, so the client can import it.
package rules

import (
	"fmt"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MaxExpiry is the longest expiry an override may have: 365 days. Longer is
// surely a typo, and an override that should never lapse is written without
// an expiry.
const MaxExpiry = 365 * 24 * time.Hour

// MaxReason bounds an override's reason in bytes: it is shown in status,
// logs and events, where a paragraph would not help.
const MaxReason = 500

// CheckExpiry is the rule for an override's expiry, when one is given: more
// than zero and at most MaxExpiry. Zero is not "never": an override that
// should not lapse is set without an expiry.
func CheckExpiry(d time.Duration) error {
	switch {
	case d <= 0:
		return fmt.Errorf("expiry %s is not positive: leave the expiry out for an override that never lapses", d)
	case d > MaxExpiry:
		return fmt.Errorf("expiry %s is longer than a year (8760h): leave the expiry out for an override that never lapses", d)
	}
	return nil
}

// CheckReason is the rule for an override's reason: at most MaxReason bytes
// of UTF-8 on one line, without control characters.
func CheckReason(reason string) error {
	if len(reason) > MaxReason {
		return fmt.Errorf("reason is %d bytes long: keep it under %d (a ticket number and a few words)", len(reason), MaxReason)
	}
	if !utf8.ValidString(reason) {
		return fmt.Errorf("reason is not valid UTF-8")
	}
	if i := strings.IndexFunc(reason, unicode.IsControl); i >= 0 {
		return fmt.Errorf("reason contains a control character at byte %d: use a single line of text", i)
	}
	return nil
}
