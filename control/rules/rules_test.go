package rules

import (
	"strings"
	"testing"
	"time"
)

// TestCheckExpiry pins the one rule every override path applies: zero and
// negative are refused (zero used to mean "never" in directorctl while the
// server refused it), a year is the most, and one second more is refused
// (director drain --for 8760h1s used to pass).
func TestCheckExpiry(t *testing.T) {
	for _, c := range []struct {
		d    time.Duration
		want string // "" = accepted
	}{
		{0, "expiry 0s is not positive"},
		{-time.Minute, "expiry -1m0s is not positive"},
		{time.Second, ""},
		{2 * time.Hour, ""},
		{8760 * time.Hour, ""},
		{8760*time.Hour + time.Second, "expiry 8760h0m1s is longer than a year (8760h)"},
	} {
		err := CheckExpiry(c.d)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("CheckExpiry(%s) = %v, want accepted", c.d, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("CheckExpiry(%s) = %v, want %q", c.d, err, c.want)
		}
	}
}

func TestCheckReason(t *testing.T) {
	for _, c := range []struct{ reason, want string }{
		{"TICKET-42 kernel update", ""},
		{strings.Repeat("x", MaxReason), ""},
		{strings.Repeat("x", MaxReason+1), "reason is 501 bytes long"},
		{"a\nb", "control character at byte 1"},
		{"\xff", "not valid UTF-8"},
	} {
		err := CheckReason(c.reason)
		if (c.want == "") != (err == nil) || err != nil && !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckReason(%.20q) = %v, want %q", c.reason, err, c.want)
		}
	}
}
